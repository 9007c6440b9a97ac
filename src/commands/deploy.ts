import { defineCommand } from "./spec.ts";
import { validateAvatarName } from "../core/names.ts";

export const deployCommand = defineCommand({
  name: "deploy",
  summary: "Deploy an avatar's model to its endpoint (reused when already serving)",
  args: [{ name: "name", description: "avatar name", required: true }],
  options: [
    { flags: "--model-version <version>", description: "model version, alias or run id (default: the default version)" },
    { flags: "--gpu <gpu>", description: "l4 or t4 (vertex)", choices: ["l4", "t4"] },
    { flags: "--replace", description: "vertex: if quota refuses the new version beside the old one, undeploy the old one first (a short gap)" },
    { flags: "--shared-endpoint", description: "vertex: a shared endpoint (1.5 MB, 60 s per request) where dedicated endpoints are unavailable" },
  ],
  examples: ["avatar deploy alice", "avatar deploy alice --model-version 2 --json", "avatar deploy alice --replace --no-input"],
  async run(ctx, { args, options }) {
    const { formatPlannedRequests } = await import("../core/vertex-specs.ts"); // --dry-run output only
    const name = validateAvatarName(args[0]!);
    const { withBackend } = await import("../workflows/session.ts");
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
