import { defineCommand } from "./spec.ts";
import { validateAvatarName } from "../core/names.ts";

export const downCommand = defineCommand({
  name: "down",
  summary: "Undeploy and delete an avatar's endpoint (stop billing)",
  args: [{ name: "name", description: "avatar name", required: true }],
  examples: ["avatar down alice", "avatar down alice --json"],
  async run(ctx, { args }) {
    const { formatPlannedRequests } = await import("../core/vertex-specs.ts"); // --dry-run output only
    const name = validateAvatarName(args[0]!);
    const { withBackend } = await import("../workflows/session.ts");
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
