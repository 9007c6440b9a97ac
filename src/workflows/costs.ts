// Cost before every paid action and what is billing now. Vertex only: the local backend costs
// nothing, so it gets no estimate, no question and no reminder (its output stays as it was).
import type { Backend, EndpointInfo, TrainingJob } from "../backends/backend.ts";
import type { Context } from "../context.ts";
import type { Gpu } from "../core/config.ts";
import { deployEstimate, estimateLine, estimateShort, formatUsd, trainingEstimate, type CostEstimate, type DeployEstimate, type Pipeline, type TrainingEstimate } from "../core/costs.ts";
import { AvatarError } from "../core/errors.ts";
import { stepsFor } from "../core/presets.ts";
import { usdPerHour } from "../core/rates.ts";

/**
 * Prints the estimate line, then on a terminal asks (--yes skips). A script (no TTY, CI, --no-input,
 * --json) proceeds: a cost question must not break CI, and the estimate is in --json. --dry-run
 * never asks. "No" starts nothing (exit 2, like any other refused confirmation).
 */
export async function confirmCost(ctx: Context, estimate: CostEstimate | undefined, name: string, action: string): Promise<void> {
  if (!estimate) return;
  ctx.out.info(estimateLine(estimate, name));
  if (ctx.flags.dryRun || ctx.flags.yes || !ctx.prompts.interactive) return;
  if (await ctx.prompts.confirm({ message: `${action} (${estimateShort(estimate)})?`, default: true })) return;
  throw new AvatarError("USAGE", `${action}: not confirmed, so nothing was started or changed.`, {
    hint: "Pass --yes to skip the question; --dry-run shows the requests and the estimate without asking.",
  });
}

/** `photos`: how many photos the folder holds at most (steps scale with them when --steps is not given). */
export function trainingCost(backend: Pick<Backend, "kind">, input: { base: string; pipeline?: Pipeline; steps?: number; photos?: number; gpu: Gpu; spot: boolean }): TrainingEstimate | undefined {
  if (backend.kind !== "vertex") return undefined;
  return trainingEstimate({ gpu: input.gpu, pipeline: input.pipeline, steps: stepsFor(input.base, input.steps, input.photos), spot: input.spot });
}

export function deployCost(backend: Pick<Backend, "kind">, gpu: Gpu): DeployEstimate | undefined {
  return backend.kind === "vertex" ? deployEstimate({ gpu }) : undefined;
}

const isGpu = (gpu: string | undefined): gpu is Gpu => gpu === "l4" || gpu === "t4";

/** USD per hour an endpoint bills while a model is deployed on it (list price), or undefined. */
export function endpointRate(endpoint: EndpointInfo | undefined): number | undefined {
  // A model serves (and bills) also while a new version is deploying beside it.
  if (!endpoint?.modelVersion || !isGpu(endpoint.gpu)) return undefined;
  return usdPerHour(endpoint.gpu);
}

/** USD per hour a training job bills while it runs (a queued one bills nothing yet). */
export function jobRate(job: TrainingJob): number | undefined {
  return job.state === "running" && job.gpu ? usdPerHour(job.gpu, job.spot === true) : undefined;
}

/**
 * After `generate` on an endpoint that stays up: "alice's endpoint bills ≈$0.98/h; `avatar down
 * alice` stops it." Not with -q (info) or --json (the envelope is the whole answer).
 */
export async function remindBilling(ctx: Context, backend: Backend, name: string): Promise<void> {
  if (backend.kind !== "vertex" || ctx.flags.json) return;
  const rate = endpointRate(await backend.serving.get(name).catch(() => undefined));
  if (rate !== undefined) ctx.out.info(`${name}'s endpoint bills ≈${formatUsd(rate)}/h; \`avatar down ${name}\` stops it.`);
}

/** Before a deployment: the estimate line, and the question unless that version already serves on that GPU (nothing new to pay for). */
export async function confirmDeploy(ctx: Context, backend: Backend, input: { name: string; versionId: string; gpu: Gpu }): Promise<DeployEstimate | undefined> {
  const estimate = deployCost(backend, input.gpu);
  if (!estimate) return undefined;
  const serving = ctx.flags.dryRun ? undefined : await backend.serving.get(input.name);
  if (serving?.modelVersion === input.versionId && serving.gpu === input.gpu) return estimate;
  await confirmCost(ctx, estimate, input.name, `Deploy ${input.name} v${input.versionId}`);
  return estimate;
}

/** Everything of these avatars that bills right now, per hour at list price: serving endpoints and running training jobs. */
export function billingNow(avatars: readonly { endpoint?: EndpointInfo; runs: TrainingJob[] }[]): { usdPerHour: number; endpoints: number; trainingJobs: number } {
  let usd = 0;
  let endpoints = 0;
  let trainingJobs = 0;
  for (const a of avatars) {
    const rate = endpointRate(a.endpoint);
    if (rate !== undefined) {
      usd += rate;
      endpoints++;
    }
    for (const job of a.runs) {
      const r = jobRate(job);
      if (r !== undefined) {
        usd += r;
        trainingJobs++;
      }
    }
  }
  return { usdPerHour: Math.round(usd * 10_000) / 10_000, endpoints, trainingJobs };
}
