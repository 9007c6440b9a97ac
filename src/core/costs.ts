// Cost estimates before a paid action (training, deploy, batch generation) and list-price cost of
// what is running. Pure: durations are estimates from the tables below, prices come from rates.ts.
import type { Gpu } from "./config.ts";
import { PRICES_AS_OF, PRICES_REGION, PRICING_URL, rates, usdPerHour } from "./rates.ts";
import { STUDIO_PREFIX } from "./studio.ts";

export type Pipeline = "sd15" | "sdxl";
export interface Range {
  low: number;
  high: number;
}

// Training time (ESTIMATES; nothing here was measured on Vertex). The README's job times, L4 SDXL
// 1000 steps 45–90 min and T4 SD 1.5 800 steps 15–25 min, less TRAINING_STARTUP (image pull,
// trainer package, base download: 5–10 min) give L4/SDXL 2.4–4.8 s and T4/SD 1.5 0.75–1.125 s
// per step. The other two pairs are scaled by handler.py's per-step speed ratios between the
// cards (SD 1.5 0.5/0.2 = 2.5×, SDXL 1.4/0.45 ≈ 3.1×): a guess that training scales like inference.
export const TRAINING_STARTUP_MINUTES: Range = { low: 5, high: 10 };
export const secondsPerStep: Readonly<Record<Gpu, Record<Pipeline, Range>>> = {
  l4: { sdxl: { low: 2.4, high: 4.8 }, sd15: { low: 0.3, high: 0.45 } },
  t4: { sd15: { low: 0.75, high: 1.125 }, sdxl: { low: 7.5, high: 15 } },
};

/** From `avatar deploy` to the first answer (README: 15–25 min; an estimate). */
export const DEPLOY_READY_MINUTES: Range = { low: 15, high: 25 };

// Batch generation (ESTIMATES): one image of 30 steps at the base's own size. L4/SDXL: the
// README's 8–12 s up to handler.py's refusal budget (0.45 s per step-megapixel × 1.05 MP × 30 +
// 0.8 s decode ≈ 15 s); T4/SD 1.5: the README's 5–8 s; the other pairs from handler.py's budgets.
// A batch job's start-up (serving image pull, pip install, base download, model load; no endpoint
// to create) is billed: 5–15 min, unmeasured.
export const BATCH_STARTUP_MINUTES: Range = { low: 5, high: 15 };
export const secondsPerImage: Readonly<Record<Gpu, Record<Pipeline, Range>>> = {
  l4: { sdxl: { low: 8, high: 15 }, sd15: { low: 2, high: 4 } },
  t4: { sd15: { low: 5, high: 8 }, sdxl: { low: 25, high: 46 } },
};
const nativeSize: Record<Pipeline, number> = { sd15: 512, sdxl: 1024 };

interface EstimateBase {
  machineType: string;
  accelerator?: string;
  gpu: Gpu;
  spot: boolean;
  usdPerHour: number;
  region: string;
  pricesAsOf: string;
  pricingUrl: string;
  /** Always true: list prices and estimated durations, not a quote. */
  estimate: true;
}

export interface TrainingEstimate extends EstimateBase {
  kind: "training";
  steps: number;
  pipeline: Pipeline;
  secondsPerStep: Range;
  startupMinutes: Range;
  hours: Range;
  usd: Range;
}

export interface DeployEstimate extends EstimateBase {
  kind: "deploy";
  readyInMinutes: Range;
  usdPerDay: number;
}

export interface BatchEstimate extends EstimateBase {
  kind: "batch";
  images: number;
  secondsPerImage: Range;
  startupMinutes: Range;
  hours: Range;
  usd: Range;
}

export type CostEstimate = TrainingEstimate | DeployEstimate | BatchEstimate;

const round = (x: number, digits: number) => Math.round(x * 10 ** digits) / 10 ** digits;
const scale = (r: Range, f: number): Range => ({ low: r.low * f, high: r.high * f });
const roundRange = (r: Range, digits: number): Range => ({ low: round(r.low, digits), high: round(r.high, digits) });

function base(gpu: Gpu, spot: boolean): EstimateBase {
  const rate = rates[gpu];
  return {
    machineType: rate.machineType,
    ...(rate.accelerator ? { accelerator: rate.accelerator } : {}),
    gpu,
    spot,
    usdPerHour: round(usdPerHour(gpu, spot), 4),
    region: PRICES_REGION,
    pricesAsOf: PRICES_AS_OF,
    pricingUrl: PRICING_URL,
    estimate: true,
  };
}

/** A training job: start-up plus steps × seconds per step, at the machine's rate. An unknown pipeline counts as SDXL (the slower). */
export function trainingEstimate(input: { gpu: Gpu; pipeline?: Pipeline; steps: number; spot: boolean }): TrainingEstimate {
  const pipeline = input.pipeline ?? "sdxl";
  const perStep = secondsPerStep[input.gpu][pipeline];
  const hours = { low: TRAINING_STARTUP_MINUTES.low / 60 + (input.steps * perStep.low) / 3600, high: TRAINING_STARTUP_MINUTES.high / 60 + (input.steps * perStep.high) / 3600 };
  const b = base(input.gpu, input.spot);
  const usd = scale(hours, usdPerHour(input.gpu, input.spot));
  return { kind: "training", ...b, steps: input.steps, pipeline, secondsPerStep: perStep, startupMinutes: TRAINING_STARTUP_MINUTES, hours: roundRange(hours, 3), usd: roundRange(usd, 3) };
}

/** A deployment bills per hour from when it serves until `avatar down` (min = max = 1 replica). */
export function deployEstimate(input: { gpu: Gpu }): DeployEstimate {
  const b = base(input.gpu, false);
  return { kind: "deploy", ...b, readyInMinutes: DEPLOY_READY_MINUTES, usdPerDay: round(usdPerHour(input.gpu) * 24, 2) };
}

/**
 * A batch prediction job of `images` images on one node (no idle endpoint): start-up plus images ×
 * seconds per image, scaled by steps (default 30) and pixels (default the base's own size).
 * For `generate --no-endpoint`.
 */
export function batchEstimate(input: { gpu: Gpu; pipeline: Pipeline; images: number; spot?: boolean; steps?: number; width?: number; height?: number }): BatchEstimate {
  const size = nativeSize[input.pipeline];
  const factor = ((input.steps ?? 30) / 30) * (((input.width ?? size) * (input.height ?? size)) / (size * size));
  const perImage = scale(secondsPerImage[input.gpu][input.pipeline], factor);
  const hours = { low: BATCH_STARTUP_MINUTES.low / 60 + (input.images * perImage.low) / 3600, high: BATCH_STARTUP_MINUTES.high / 60 + (input.images * perImage.high) / 3600 };
  const spot = input.spot === true;
  const usd = scale(hours, usdPerHour(input.gpu, spot));
  return { kind: "batch", ...base(input.gpu, spot), images: input.images, secondsPerImage: roundRange(perImage, 2), startupMinutes: BATCH_STARTUP_MINUTES, hours: roundRange(hours, 3), usd: roundRange(usd, 3) };
}

/** "$0.98", "$23.56", "$0.004". */
export function formatUsd(usd: number): string {
  return usd >= 0.01 || usd === 0 ? `$${usd.toFixed(2)}` : `$${usd.toFixed(3)}`;
}

/** "35m", "2h10m", "3d4h". */
export function formatHours(hours: number): string {
  const minutes = Math.round(hours * 60);
  if (minutes < 60) return `${minutes}m`;
  if (minutes < 48 * 60) return `${Math.floor(minutes / 60)}h${String(minutes % 60).padStart(2, "0")}m`;
  return `${Math.floor(minutes / 1440)}d${Math.floor((minutes % 1440) / 60)}h`;
}

const minutes = (r: Range) => `${Math.round(r.low)}–${Math.round(r.high)} min`;
const usdRange = (r: Range) => `${formatUsd(r.low)}–${formatUsd(r.high).slice(1)}`;
const hoursRange = (r: Range) => (r.high < 2 ? minutes(scale(r, 60)) : `${r.low.toFixed(1)}–${r.high.toFixed(1)} h`);

function machine(e: CostEstimate): string {
  const gpu = e.accelerator ? ` + 1× ${e.accelerator.replace("NVIDIA_TESLA_", "NVIDIA ").replace("NVIDIA_", "NVIDIA ")}` : "";
  return `${e.machineType}${gpu}, ${e.spot ? "Spot" : "on-demand"}`;
}

// A studio's endpoint goes by studio-<name> (core/studio.ts): say "studio <name>" and `down --studio <name>`.
const studioName = (name: string) => (name.startsWith(STUDIO_PREFIX) ? name.slice(STUDIO_PREFIX.length) : undefined);
const served = (name: string) => (studioName(name) ? `studio ${studioName(name)}` : name);
const downTarget = (name: string) => (studioName(name) ? `--studio ${studioName(name)}` : name);

/** A studio's hourly list price, and its share per avatar (`list`, `status`, `studio list`). */
export const studioRateText = (rate: { usdPerHour?: number; usdPerHourPerAvatar?: number }): string | undefined =>
  rate.usdPerHour === undefined ? undefined : `≈ ${formatUsd(rate.usdPerHour)}/h (≈ ${formatUsd(rate.usdPerHourPerAvatar ?? rate.usdPerHour)}/h per avatar)`;

/** The one line printed before a paid action starts. */
export function estimateLine(e: CostEstimate, name: string): string {
  const prices = `list prices of ${e.pricesAsOf}, ${e.pricingUrl}`;
  switch (e.kind) {
    case "training":
      return `Training ${name} on ${machine(e)}: ≈ ${hoursRange(e.hours)}, ≈ ${usdRange(e.usd)} (estimate: ${e.steps} steps at ${e.secondsPerStep.low}–${e.secondsPerStep.high} s/step + ${minutes(e.startupMinutes)} start-up; ${prices})`;
    case "deploy":
      return `Serving ${served(name)} on ${machine(e)}: ready in ≈ ${minutes(e.readyInMinutes)}, then ≈ ${formatUsd(e.usdPerHour)}/h (≈ ${formatUsd(e.usdPerDay)}/day) until \`avatar down ${downTarget(name)}\` (estimate; ${prices})`;
    case "batch":
      return `Batch job for ${name} on ${machine(e)}: ${e.images} image${e.images === 1 ? "" : "s"} in ≈ ${hoursRange(e.hours)}, ≈ ${usdRange(e.usd)}, no endpoint left running (estimate: ${e.secondsPerImage.low}–${e.secondsPerImage.high} s/image + ${minutes(e.startupMinutes)} start-up; ${prices})`;
  }
}

/** The figure a confirmation question repeats: "≈ $0.29–0.59" or "≈ $0.98/h until it is stopped". */
export function estimateShort(e: CostEstimate): string {
  return e.kind === "deploy" ? `≈ ${formatUsd(e.usdPerHour)}/h until it is stopped` : `≈ ${usdRange(e.usd)}`;
}

export interface Billing {
  /** When the serving model was deployed (its DeployedModel createTime). */
  since: string;
  hours: number;
  usdPerHour: number;
  /** hours × usdPerHour at list price (an estimate: billing granularity and discounts differ). */
  usdSoFar: number;
}

/** What an endpoint has cost since its model was deployed, at list price; undefined without a GPU or a deploy time. */
export function endpointBilling(endpoint: { gpu?: string; deployedAt?: string }, now: Date): Billing | undefined {
  const gpu = endpoint.gpu === "l4" || endpoint.gpu === "t4" ? endpoint.gpu : undefined;
  const since = endpoint.deployedAt ? Date.parse(endpoint.deployedAt) : NaN;
  if (!gpu || !Number.isFinite(since)) return undefined;
  const hours = Math.max(0, (now.getTime() - since) / 3_600_000);
  const rate = usdPerHour(gpu);
  return { since: endpoint.deployedAt!, hours: round(hours, 3), usdPerHour: round(rate, 4), usdSoFar: round(hours * rate, 3) };
}

/** "deployed 2h10m ago, ≈ $2.13 so far at list price (≈ $0.98/h)". */
export function billingText(b: Billing): string {
  return `deployed ${formatHours(b.hours)} ago, ≈ ${formatUsd(b.usdSoFar)} so far at list price (≈ ${formatUsd(b.usdPerHour)}/h)`;
}
