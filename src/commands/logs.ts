import { defineCommand } from "./spec.ts";
import { AvatarError, usageError } from "../core/errors.ts";
import { validateAvatarName } from "../core/names.ts";

export const logsCommand = defineCommand({
  name: "logs",
  summary: "Training logs of a run (default: the newest) or the serving logs",
  args: [{ name: "name", description: "avatar name", required: true }],
  options: [
    { flags: "--run <run-id>", description: "training run id" },
    { flags: "--serving", description: "the endpoint's logs instead of training logs" },
    { flags: "--tail <n>", description: "only the last n lines", number: "int" },
    { flags: "-f, --follow", description: "then print new lines until the run ends (Ctrl-C stops following, not the run)" },
  ],
  examples: ["avatar logs alice", "avatar logs alice --follow --tail 20", "avatar logs alice --serving --tail 50"],
  async run(ctx, { args, options }) {
    const name = validateAvatarName(args[0]!);
    const follow = options.follow === true;
    const tail = options.tail as number | undefined;
    // Bad flags are refused before any backend is opened.
    if (tail !== undefined && tail < 1) throw usageError(`--tail needs at least 1 line, got ${tail}.`);
    if (follow && options.serving) throw usageError("--follow works with training logs, not --serving.", `Drop --follow, or run \`avatar logs ${name} --follow\` for the training run.`);
    const { withBackend } = await import("../workflows/session.ts");
    return withBackend(ctx, async (backend) => {
      const lines: string[] = [];
      // Followed lines are printed as they come; --json gets them all in its envelope at the end.
      const onLine = (line: string) => {
        lines.push(line);
        if (follow) ctx.out.line(line);
      };
      if (options.serving) {
        await backend.serving.logs(name, { onLine, tail });
        return { data: { name, source: "serving", lines }, human: lines };
      }
      const runs = await backend.training.list({ name });
      const run = options.run ? runs.find((r) => r.runId === options.run) : runs.at(-1);
      if (!run) throw new AvatarError("NOT_FOUND", `${name} has no training run${options.run ? ` ${String(options.run)}` : ""}.`, { hint: `\`avatar status ${name}\` lists the runs.` });
      const stopNote = follow ? ctx.keepsRunning(`training run ${run.runId} of ${name}, if not finished (\`avatar logs ${name} -f\` follows it again)`) : () => {};
      try {
        await backend.training.logs(run.id, { onLine, tail, follow, signal: ctx.signal });
      } finally {
        stopNote();
      }
      if (ctx.signal.aborted) throw new AvatarError("INTERRUPTED", "Stopped following the log.");
      return { data: { name, source: "training", runId: run.runId, lines }, human: follow ? [] : lines };
    });
  },
});
