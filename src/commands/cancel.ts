import { defineCommand } from "./spec.ts";
import { AvatarError } from "../core/errors.ts";
import { isRunId, validateAvatarName } from "../core/names.ts";

export const cancelCommand = defineCommand({
  name: "cancel",
  summary: "Cancel an avatar's queued or running training job (asks first; --yes in scripts)",
  description:
    "Vertex: cancels the CustomJob and waits for it to end (the time it ran is billed). Local: stops the trainer; its checkpoints stay, so the same `avatar train` resumes it. Nothing queued or running: exit 6.",
  args: [{ name: "name", description: "avatar name", required: true }],
  options: [{ flags: "--run <run-id>", description: "only this run (default: every queued or running job of the avatar)" }],
  examples: ["avatar cancel alice", "avatar cancel alice --yes --json"],
  async run(ctx, { args, options }) {
    const name = validateAvatarName(args[0]!);
    const runId = options.run as string | undefined;
    if (runId !== undefined && !isRunId(runId)) throw new AvatarError("BAD_INPUT", `"${runId}" is not a run id.`, { hint: "Run ids look like 20261122-101500; `avatar status <name>` lists them." });
    const { withBackend } = await import("../workflows/session.ts");
    const { cancelTraining } = await import("../workflows/cancel.ts");
    return withBackend(ctx, async (backend) => {
      const result = await cancelTraining(ctx, backend, { name, runId });
      const human = result.cancelled.map((j) => `${result.dryRun ? "would cancel" : j.state.padEnd(12)}  run ${j.runId}  job ${j.id}`);
      return { data: result, human, next: result.dryRun ? undefined : `avatar status ${name}` };
    });
  },
});
