import type { Context } from "../context.ts";
import type { Check } from "../workflows/doctor.ts";
import { defineCommand } from "./spec.ts";
import { table } from "../ui/format.ts";

/** The checks as a table, then the hint of every one that is not ok. */
function checkLines(ctx: Context, checks: readonly Check[]): string[] {
  const mark = { ok: ctx.out.style.green("ok"), warn: ctx.out.style.yellow("warn"), fail: ctx.out.style.red("fail") };
  const lines = table(checks.map((c) => [mark[c.status], c.name, c.message]));
  for (const check of checks) if (check.hint && check.status !== "ok") lines.push(`  ${check.name}: ${check.hint}`);
  return lines;
}

export const doctorCommand = defineCommand({
  name: "doctor",
  summary: "Check Node, credentials, project, bucket and the Python environment",
  description:
    "Runs named checks (ok / warn / fail, each failure with a fix hint) and shows the resolved config with where each value came from. Exit code 0 even when a check fails; `healthy` in --json says. On vertex, --smoke also reads the project's Vertex quotas and runs a CPU-only job on the training image (a few minutes, about a cent) that proves the image, the bucket mount and the trainer import before the first GPU hour; with --dry-run it prints that job's request and sends nothing.",
  options: [
    { flags: "--setup-python", description: "create or complete the local Python environment now (about 3 GB on first run)" },
    { flags: "--smoke", description: "vertex: read the GPU quotas and run a CPU-only smoke job on the training image (about a cent)" },
  ],
  examples: ["avatar doctor", "avatar doctor --json --backend vertex", "avatar doctor --setup-python", "avatar doctor --smoke --backend vertex", "avatar doctor --smoke --dry-run --json"],
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
    if (options.smoke) return smoke(ctx);
    const { runDoctor } = await import("../workflows/doctor.ts");
    const report = await runDoctor(ctx);
    const human = checkLines(ctx, report.checks);
    human.push("", report.healthy ? "All required checks passed." : "Some checks failed; see the hints above.");
    return {
      data: report,
      human,
      next: report.healthy ? (ctx.config.values.backend === "local" ? "avatar demo" : "avatar train ./selfies --name <name>") : undefined,
    };
  },
});

async function smoke(ctx: Context) {
  const { runSmokeDoctor } = await import("../workflows/doctor-smoke.ts");
  const report = await runSmokeDoctor(ctx);
  const { smoke } = report;
  if (report.dryRun) {
    const { formatPlannedRequests } = await import("../core/vertex-specs.ts"); // --dry-run output only
    return {
      data: report,
      human: [
        `Would run smoke job avatar-smoke-${smoke.stamp} on ${smoke.machineType} (no GPU) with ${smoke.imageUri}.`,
        ...formatPlannedRequests(report.requests),
        "",
        `Not checked: ${report.notChecked?.join("; ")}.`,
      ],
    };
  }
  const human = checkLines(ctx, report.checks);
  if (smoke.job) {
    const cost = `≈ $${smoke.approxUsd?.toFixed(3)} (${smoke.machineType} at ≈ $${smoke.approxUsdPerHour}/h, an estimate)`;
    human.push("", `Smoke job ${smoke.job.split("/").at(-1)}: ${smoke.state} after ${smoke.seconds} s, ${cost}.`);
  }
  human.push("", report.healthy ? "The project is ready for a training run." : "Some checks failed; see the hints above.");
  return { data: report, human, next: report.healthy ? "avatar train ./selfies --name <name>" : undefined };
}
