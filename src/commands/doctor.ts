import { defineCommand } from "./spec.ts";
import { table } from "../ui/format.ts";

export const doctorCommand = defineCommand({
  name: "doctor",
  summary: "Check Node, credentials, project, bucket and the Python environment",
  description:
    "Runs named checks (ok / warn / fail, each failure with a fix hint) and shows the resolved config with where each value came from. Exit code 0 even when a check fails; `healthy` in --json says.",
  options: [{ flags: "--setup-python", description: "create or complete the local Python environment now (about 3 GB on first run)" }],
  examples: ["avatar doctor", "avatar doctor --json --backend vertex", "avatar doctor --setup-python"],
  async run(ctx, { options }) {
    if (options.setupPython) {
      const { ensurePythonEnv } = await import("../backends/local/python-env.ts");
      const spinner = await ctx.out.spinner("Checking the Python environment");
      try {
        const { created } = await ensurePythonEnv({
          dir: ctx.config.values.venv,
          env: ctx.env,
          signal: ctx.signal,
          onPhase: (phase) => spinner.update(phase),
          onLine: (line) => ctx.out.detail(line),
        });
        spinner.succeed(created ? "Python environment ready" : "Python environment already up to date");
      } catch (error) {
        spinner.fail("Python environment set-up failed");
        throw error;
      }
    }
    const { runDoctor } = await import("../workflows/doctor.ts");
    const report = await runDoctor(ctx);
    const mark = { ok: ctx.out.style.green("ok"), warn: ctx.out.style.yellow("warn"), fail: ctx.out.style.red("fail") };
    const human = table(report.checks.map((c) => [mark[c.status], c.name, c.message]));
    for (const check of report.checks) if (check.hint && check.status !== "ok") human.push(`  ${check.name}: ${check.hint}`);
    human.push("", report.healthy ? "All required checks passed." : "Some checks failed; see the hints above.");
    return {
      data: report,
      human,
      next: report.healthy ? (ctx.config.values.backend === "local" ? "avatar demo" : "avatar train ./selfies --name <name>") : undefined,
    };
  },
});
