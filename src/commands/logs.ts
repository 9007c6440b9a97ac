import { defineCommand } from "./spec.ts";
import { AvatarError } from "../core/errors.ts";
import { validateAvatarName } from "../core/names.ts";

export const logsCommand = defineCommand({
  name: "logs",
  summary: "Training logs of a run (default: the newest) or the serving logs",
  args: [{ name: "name", description: "avatar name", required: true }],
  options: [
    { flags: "--run <run-id>", description: "training run id" },
    { flags: "--serving", description: "the endpoint's logs instead of training logs" },
    { flags: "--tail <n>", description: "only the last n lines", number: "int" },
  ],
  examples: ["avatar logs alice", "avatar logs alice --serving --tail 50"],
  async run(ctx, { args, options }) {
    const name = validateAvatarName(args[0]!);
    const { withBackend } = await import("../workflows/session.ts");
    return withBackend(ctx, async (backend) => {
      const lines: string[] = [];
      const onLine = (line: string) => lines.push(line);
      const tail = options.tail as number | undefined;
      if (options.serving) {
        await backend.serving.logs(name, { onLine, tail });
        return { data: { name, source: "serving", lines }, human: lines };
      }
      const runs = await backend.training.list({ name });
      const run = options.run ? runs.find((r) => r.runId === options.run) : runs.at(-1);
      if (!run) throw new AvatarError("NOT_FOUND", `${name} has no training run${options.run ? ` ${String(options.run)}` : ""}.`, { hint: `\`avatar status ${name}\` lists the runs.` });
      await backend.training.logs(run.id, { onLine, tail });
      return { data: { name, source: "training", runId: run.runId, lines }, human: lines };
    });
  },
});
