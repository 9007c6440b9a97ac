import { defineCommand } from "./spec.ts";
import { formatUsd } from "../core/costs.ts";
import { AvatarError } from "../core/errors.ts";
import { validateAvatarName } from "../core/names.ts";
import type { Context } from "../context.ts";
import type { CommandResult } from "../ui/output.ts";

export const deployCommand = defineCommand({
  name: "deploy",
  summary: "Deploy an avatar's model to its endpoint (reused when already serving)",
  args: [{ name: "name", description: "avatar name", required: true }],
  options: [
    { flags: "--model-version <version>", description: "model version, alias or run id (default: the default version)" },
    { flags: "--gpu <gpu>", description: "l4 or t4 (vertex)", choices: ["l4", "t4"] },
    { flags: "--replace", description: "vertex: if quota refuses the new version beside the old one, undeploy the old one first (a short gap)" },
    { flags: "--studio <studio>", description: "add the avatar to a studio: one endpoint (one GPU) serving many avatars of one base; created when missing, never redeployed to add one" },
    { flags: "--service-account <email>", description: "vertex, with --studio: the serving identity that reads the avatars' LoRAs from the bucket (or AVATAR_SERVING_SERVICE_ACCOUNT)" },
    { flags: "--shared-endpoint", description: "vertex: a shared endpoint (1.5 MB, 60 s per request) where dedicated endpoints are unavailable" },
  ],
  examples: ["avatar deploy alice", "avatar deploy alice --studio family", "avatar deploy alice --model-version 2 --json", "avatar deploy alice --replace --no-input"],
  async run(ctx, { args, options }) {
    const { formatPlannedRequests } = await import("../core/vertex-specs.ts"); // --dry-run output only
    const name = validateAvatarName(args[0]!);
    const { withBackend } = await import("../workflows/session.ts");
    if (options.studio !== undefined) return deployStudio(ctx, name, options);
    if (options.serviceAccount !== undefined) throw new AvatarError("USAGE", "--service-account goes with --studio (a studio reads the bucket; an avatar's own endpoint does not).", { hint: `avatar deploy ${name} --studio <studio> --service-account <email>` });
    const { deployAvatar } = await import("../workflows/deploy.ts");
    return withBackend(ctx, async (backend) => {
      const result = await deployAvatar(ctx, backend, {
        name,
        version: options.modelVersion as string | undefined,
        gpu: ctx.config.values.gpu,
        replace: options.replace === true,
        sharedEndpoint: options.sharedEndpoint === true,
      });
      const human = result.dryRun
        ? [`Would deploy ${name} version ${result.version.versionId} (${result.version.artifactUri}).`, ...formatPlannedRequests(result.requests)]
        : [`${name} v${result.version.versionId} is serving${result.endpoint?.url ? ` at ${result.endpoint.url}` : ""}.`, "It bills (or holds memory) until `avatar down`."];
      return { data: result, human, next: `avatar generate ${name} "{avatar} as an astronaut"` };
    });
  },
});

/** `deploy <name> --studio <studio>`: the avatar joins the studio's manifest; the studio deploys only when it is not serving. */
async function deployStudio(ctx: Context, name: string, options: Readonly<Record<string, unknown>>): Promise<CommandResult> {
  const { validateStudioName } = await import("../core/studio.ts");
  const { formatPlannedRequests } = await import("../core/vertex-specs.ts");
  const studio = validateStudioName(String(options.studio));
  if (options.replace === true) throw new AvatarError("USAGE", "--replace does not go with --studio: a studio's endpoint is deployed once.", { hint: `avatar deploy ${name} --studio ${studio}` });
  const { withBackend } = await import("../workflows/session.ts");
  const { deployToStudio } = await import("../workflows/studio.ts");
  return withBackend(ctx, async (backend) => {
    const result = await deployToStudio(ctx, backend, {
      name,
      studio,
      version: options.modelVersion as string | undefined,
      gpu: ctx.config.values.gpu,
      sharedEndpoint: options.sharedEndpoint === true,
      ...(options.serviceAccount !== undefined ? { serviceAccount: String(options.serviceAccount) } : {}),
    });
    const serves = `Studio ${studio} serves ${result.avatars.join(", ")}`;
    const rate = result.estimate ? ` It bills ≈ ${formatUsd(result.estimate.usdPerHour)}/h for all of them until \`avatar down --studio ${studio}\`.` : " It bills (or holds memory) until `avatar down --studio " + studio + "`.";
    const human = result.dryRun
      ? [`Would add ${name} v${result.version.versionId} to studio ${studio} (${result.avatars.join(", ")}).`, ...formatPlannedRequests(result.requests)]
      : result.deployed
        ? [`${serves}; its endpoint was deployed.${rate}`]
        : [`${serves}. ${result.alreadyServed ? `${name} v${result.version.versionId} was already in it` : `Added ${name} v${result.version.versionId}`}: no redeploy (the studio reads its manifest per request).`];
    return { data: result, human, next: `avatar generate ${name} "{avatar} as an astronaut"` };
  });
}
