// avatar doctor --smoke: the doctor's checks, then one read of the project's Vertex quotas and a
// CPU-only smoke job that walks the training job's path (image, bucket mount, trainer import) for
// about a cent, before the first GPU hour. --dry-run plans the job and sends nothing at all.
import { randomBytes } from "node:crypto";
import type { PlannedRequest } from "../backends/backend.ts";
import type { Context } from "../context.ts";
import { requireValue } from "../core/config.ts";
import { AvatarError } from "../core/errors.ts";
import { newRunId } from "../core/names.ts";
import { quotaChecks, quotaNeeds } from "../core/quota-checks.ts";
import { smokeChecks, type SmokeMarker } from "../core/smoke-checks.ts";
import { SMOKE_APPROX_USD_PER_HOUR, SMOKE_MACHINE, smokeCostUsd } from "../core/smoke-spec.ts";
import { trainImage } from "../core/vertex-specs.ts";
import { runDoctor, type Check, type DoctorReport } from "./doctor.ts";

export interface SmokeReport extends Partial<DoctorReport> {
  dryRun: boolean;
  checks: Check[];
  smoke: {
    stamp: string;
    machineType: string;
    imageUri: string;
    approxUsdPerHour: number;
    job?: string;
    state?: string;
    seconds?: number;
    approxUsd?: number;
    marker?: SmokeMarker;
  };
  /** --dry-run: what would be sent, and what a dry run cannot know. */
  requests?: PlannedRequest[];
  notChecked?: string[];
}

/** Checks whose failure makes the smoke job pointless: it would only fail the same way. */
const PREREQUISITES = ["credentials", "project", "bucket", "vertex-ai"];

async function quotaCheckList(ctx: Context, project: string): Promise<Check[]> {
  const { gpu, region } = ctx.config.values;
  const needs = quotaNeeds(gpu);
  const skipped = (message: string, hint?: string): Check[] => [{ name: "quotas", status: "warn", message, hint }];
  if (!ctx.env.AVATAR_QUOTA_ENDPOINT) {
    // A local Vertex fake must never lead to a read of the real quota API.
    if (ctx.env.AVATAR_VERTEX_ENDPOINT) return skipped("not read: AVATAR_VERTEX_ENDPOINT points at a local fake", "Set AVATAR_QUOTA_ENDPOINT to a Cloud Quotas fake too.");
    const { ADC_HINT, findAdc } = await import("../backends/vertex/credentials.ts");
    if (!findAdc(ctx.env).found) return skipped("not read: no Application Default Credentials", ADC_HINT);
  }
  try {
    const { readVertexQuotas } = await import("../backends/vertex/quota.ts");
    const found = await readVertexQuotas({ project, env: ctx.env, metrics: needs.map((n) => n.metric), signal: ctx.signal });
    return quotaChecks(needs, found, project, region);
  } catch (error) {
    if (error instanceof AvatarError && error.code === "INTERRUPTED") throw error;
    const e = error instanceof AvatarError ? error : new AvatarError("REMOTE_FAILED", String(error));
    return skipped(`not read: ${e.message}`, e.hint);
  }
}

export async function runSmokeDoctor(ctx: Context): Promise<SmokeReport> {
  const { backend, region } = ctx.config.values;
  if (backend !== "vertex") {
    throw new AvatarError("USAGE", "--smoke runs a small job on Vertex AI; the local backend has nothing to smoke-test.", {
      hint: "Pass --backend vertex (with --project and --bucket), or run `avatar demo` to try the local pipeline.",
    });
  }
  const project = requireValue(ctx.config, "project");
  const bucket = requireValue(ctx.config, "bucket");
  // The seconds stamp sorts runs in time; the suffix keeps two runs in one second apart.
  const stamp = `${newRunId()}-${randomBytes(2).toString("hex")}`;
  const smoke = { stamp, machineType: SMOKE_MACHINE, imageUri: trainImage(ctx.env), approxUsdPerHour: SMOKE_APPROX_USD_PER_HOUR };
  const vertex = await import("../backends/vertex/smoke.ts");
  const where = { project, region, bucket, env: ctx.env, stamp };
  if (ctx.flags.dryRun) {
    const plan = await vertex.planSmoke(where);
    return { dryRun: true, checks: [], smoke, requests: plan.requests, notChecked: plan.notChecked };
  }

  const report = await runDoctor(ctx);
  const checks = [...report.checks, ...(await quotaCheckList(ctx, project))];
  const blocking = report.checks.filter((c) => c.status === "fail" && PREREQUISITES.includes(c.name)).map((c) => c.name);
  if (blocking.length) {
    checks.push({ name: "smoke-job", status: "fail", message: `not run: ${blocking.join(", ")} failed`, hint: "Fix the failed checks above, then run `avatar doctor --smoke` again." });
    return { ...report, healthy: false, dryRun: false, checks, smoke };
  }
  const spinner = await ctx.out.spinner(`Smoke job on ${SMOKE_MACHINE} in ${region} (a few minutes: most of it is the image pull)`);
  let outcome;
  try {
    outcome = await vertex.runSmoke({
      ...where,
      signal: ctx.signal,
      onPhase: (text) => spinner.update(`Smoke test: ${text}`),
      onDetail: (line) => ctx.out.detail(line),
      keepsRunning: (note) => ctx.keepsRunning(note),
    });
  } catch (error) {
    spinner.fail("Smoke test stopped");
    throw error;
  }
  const found = smokeChecks(outcome);
  const passed = found.every((c) => c.status === "ok");
  spinner[passed ? "succeed" : "warn"](passed ? "Smoke test passed" : "Smoke test found problems");
  checks.push(...found);
  return {
    ...report,
    healthy: checks.every((c) => c.status !== "fail"),
    dryRun: false,
    checks,
    smoke: {
      ...smoke,
      seconds: Math.round(outcome.seconds),
      // Billed only once a job exists; the estimate is the machine's hourly rate times the wait.
      ...(outcome.job ? { job: outcome.job.name, state: outcome.job.state, approxUsd: Number(smokeCostUsd(outcome.seconds).toFixed(3)) } : {}),
      ...(outcome.marker ? { marker: outcome.marker } : {}),
    },
  };
}
