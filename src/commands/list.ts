import { defineCommand } from "./spec.ts";
import { table } from "../ui/format.ts";

export const listCommand = defineCommand({
  name: "list",
  summary: "All avatars with their runs, model versions and endpoints",
  examples: ["avatar list", "avatar list --json"],
  async run(ctx) {
    const { withBackend } = await import("../workflows/session.ts");
    const { inventory } = await import("../workflows/inventory.ts");
    return withBackend(ctx, async (backend) => {
      const avatars = await inventory(backend);
      const rows = avatars.map((a) => [
        a.name,
        `${a.runs.length} run${a.runs.length === 1 ? "" : "s"}${a.runs.at(-1) ? ` (last ${a.runs.at(-1)!.state})` : ""}`,
        `${a.models.length} version${a.models.length === 1 ? "" : "s"}`,
        a.endpoint ? `endpoint ${a.endpoint.state}` : "not deployed",
      ]);
      return {
        data: { backend: backend.kind, avatars },
        human: avatars.length ? table([["NAME", "RUNS", "MODELS", "ENDPOINT"], ...rows]) : ["No avatars yet."],
        next: avatars.length ? `avatar status ${avatars[0]!.name}` : "avatar demo",
      };
    });
  },
});
