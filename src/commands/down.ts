import { defineCommand } from "./spec.ts";
import { formatUsd } from "../core/costs.ts";
import { AvatarError } from "../core/errors.ts";
import { validateAvatarName } from "../core/names.ts";
import type { Context } from "../context.ts";
import type { CommandResult } from "../ui/output.ts";

export const downCommand = defineCommand({
  name: "down",
  summary: "Undeploy and delete an avatar's endpoint, or --all of them (stop billing)",
  args: [{ name: "name", description: "avatar name (or --all)" }],
  options: [
    { flags: "--all", description: "every avatar endpoint of the project and region, studios included (asks first; --yes in scripts)" },
    { flags: "--studio <studio>", description: "stop a studio's endpoint (its manifest stays: a later `deploy --studio` serves the same avatars)" },
  ],
  examples: ["avatar down alice", "avatar down alice --json", "avatar down --studio family", "avatar down --all --yes"],
  async run(ctx, { args, options }) {
    const { formatPlannedRequests } = await import("../core/vertex-specs.ts"); // --dry-run output only
    if (options.all === true && args[0]) throw new AvatarError("USAGE", `Pass a name or --all, not both.`, { hint: `\`avatar down ${args[0]}\` stops one endpoint; \`avatar down --all\` stops every one.` });
    if (options.studio !== undefined) return downStudioCommand(ctx, args[0], options);
    if (options.all !== true && !args[0]) throw new AvatarError("USAGE", "Which avatar's endpoint?", { hint: "Pass a name (`avatar down alice`), or --all for every avatar endpoint." });
    const { withBackend } = await import("../workflows/session.ts");
    if (options.all === true) {
      const { downAll } = await import("../workflows/down-all.ts");
      return withBackend(ctx, async (backend) => {
        const result = await downAll(ctx, backend);
        const each = result.stopped.map((e) => `${e.name}${e.usdPerHour !== undefined ? `  ≈ ${formatUsd(e.usdPerHour)}/h` : ""}`);
        const human = result.dryRun
          ? [result.stopped.length ? `Would stop ${result.stopped.length} endpoint${result.stopped.length === 1 ? "" : "s"}:` : "No avatar endpoint to stop.", ...each.map((l) => `  ${l}`), ...formatPlannedRequests(result.requests)]
          : result.stopped.length
            ? [`Stopped ${result.stopped.length} endpoint${result.stopped.length === 1 ? "" : "s"}:`, ...each.map((l) => `  ${l}`), ...(backend.kind === "vertex" ? [`≈ ${formatUsd(result.usdPerHour)}/h stopped billing (list price).`] : [])]
            : ["No avatar endpoint was running; nothing to stop."];
        return { data: result, human };
      });
    }
    const name = validateAvatarName(args[0]!);
    return withBackend(ctx, async (backend) => {
      if (ctx.flags.dryRun) {
        const endpoint = await backend.serving.get(name);
        const requests = backend.serving.planDown ? await backend.serving.planDown(name) : undefined;
        return {
          data: { name, wouldStop: Boolean(endpoint), dryRun: true, ...(requests ? { requests } : {}) },
          human: [endpoint ? `Would stop the ${name} endpoint.` : `${name} has no endpoint.`, ...formatPlannedRequests(requests)],
        };
      }
      const stopped = await backend.serving.down(name, { signal: ctx.signal, onStage: (stage) => ctx.out.info(stage) });
      return {
        data: { name, stopped },
        human: [stopped ? `Stopped the ${name} endpoint; nothing of it is running now.` : `${name} had no endpoint; nothing to stop.`],
        next: `avatar deploy ${name}`,
      };
    });
  },
});

async function downStudioCommand(ctx: Context, name: string | undefined, options: Readonly<Record<string, unknown>>): Promise<CommandResult> {
  const { validateStudioName } = await import("../core/studio.ts");
  const { formatPlannedRequests } = await import("../core/vertex-specs.ts");
  const studio = validateStudioName(String(options.studio));
  if (name || options.all === true) {
    throw new AvatarError("USAGE", "--studio stops a whole studio; pass no avatar name or --all with it.", { hint: `\`avatar down --studio ${studio}\` stops it; \`avatar studio remove ${studio} <avatar>\` stops serving one avatar from it.` });
  }
  const { withBackend } = await import("../workflows/session.ts");
  const { downStudio } = await import("../workflows/studio.ts");
  return withBackend(ctx, async (backend) => {
    const result = await downStudio(ctx, backend, studio);
    const human = result.dryRun
      ? [result.stopped ? `Would stop studio ${studio}.` : `Studio ${studio} has no endpoint.`, ...formatPlannedRequests(result.requests)]
      : [result.stopped ? `Stopped studio ${studio}; nothing of it is running now.` : `Studio ${studio} had no endpoint; nothing to stop.`];
    return { data: result, human, next: "avatar studio list" };
  });
}
