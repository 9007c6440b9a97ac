// Generate without an endpoint (`--no-endpoint`, vertex): the images as JSONL lines in
// <name>/outputs/<stamp>/input.jsonl, a BatchPredictionJob of the model version over them, a wait
// with progress (Ctrl-C detaches; `--collect <stamp>` picks the job up again), then the job's
// output turned into exactly the files online generation writes, plus the failed images with
// their errors. Same seeds, same file names, same images as `generate` on an endpoint.
import { rmdir } from "node:fs/promises";
import { resolve } from "node:path";
import { text as readText } from "node:stream/consumers";
import { isOffline, type Backend, type ModelVersion, type PlannedRequest } from "../backends/backend.ts";
import type { BatchJob, BatchJobSpec } from "../backends/batch.ts";
import type { Context } from "../context.ts";
import { batchInstance, instanceSeed, instancesJsonl, parseOutputLine, type PlannedImage, type SharedParameters } from "../core/batch-spec.ts";
import type { Gpu } from "../core/config.ts";
import { batchEstimate, deployEstimate, formatUsd, type BatchEstimate, type Pipeline } from "../core/costs.ts";
import { AvatarError } from "../core/errors.ts";
import { newRunId, resourceLabels } from "../core/names.ts";
import { withAvatar } from "../core/packs.ts";
import { outputsKey, runModelKey } from "../core/run-keys.ts";
import { confirmCost } from "./costs.ts";
import { firstSeed, sharedParameters, type GenerateInput, type GenerateResult } from "./generate.ts";
import { finishOutputs, newOutputFolder, storeOutputs, writePrediction, type Prediction } from "./generate-files.ts";

export interface BatchGenerateInput extends GenerateInput {
  gpu: Gpu;
  spot: boolean;
  /** Model version, alias or run id (default: the default version). */
  version?: string;
}

export interface FailedImage {
  /** 1-based place in the set (the NN of the file it would have had). */
  position: number;
  prompt: string;
  seed: number;
  error: string;
}

export interface BatchGenerateResult extends Partial<GenerateResult> {
  dryRun: boolean;
  stamp: string;
  /** gs:// folder of this generation: input.jsonl, request.json, the job's output, the kept files. */
  outputs: string;
  planned: number;
  estimate?: BatchEstimate;
  job?: BatchJob;
  failed: FailedImage[];
  requests?: PlannedRequest[];
}

/** What `--collect` needs to finish a generation started elsewhere: kept beside input.jsonl. */
interface BatchRecord {
  schema: 1;
  name: string;
  stamp: string;
  versionId: string;
  images: PlannedImage[];
  parameters: SharedParameters;
  negativePrompt?: string;
}

const INPUT = "input.jsonl";
const RECORD = "request.json";

function notAvailable(name: string): AvatarError {
  return new AvatarError("NOT_AVAILABLE", "`--no-endpoint` is for the vertex backend: the local backend serves on this machine without cost.", {
    hint: `Run \`avatar deploy ${name}\`, then \`avatar generate ${name} …\` without --no-endpoint.`,
  });
}

/** The version's pipeline from its avatar.json (for estimates); the configured base's when unreadable. */
async function pipelineOf(ctx: Context, backend: Backend, version: ModelVersion | undefined): Promise<Pipeline> {
  if (version?.runId) {
    try {
      const manifest = JSON.parse(await readText(await backend.store.read(`${runModelKey(version.name, version.runId)}/avatar.json`))) as { pipeline?: unknown };
      if (manifest.pipeline === "sd15" || manifest.pipeline === "sdxl") return manifest.pipeline;
    } catch {
      // an estimate only: fall back to the configured base
    }
  }
  return ctx.config.values.baseModel === "sd15" ? "sd15" : "sdxl";
}

function planImages(input: GenerateInput): PlannedImage[] {
  const seed = firstSeed(input);
  return input.prompts.flatMap((raw) => Array.from({ length: input.numImages }, () => ({ raw, prompt: withAvatar(raw) }))).map((p, index) => ({ index, ...p, seed: seed + index }));
}

const estimateFor = (input: BatchGenerateInput, pipeline: Pipeline, images: number) =>
  batchEstimate({ gpu: input.gpu, pipeline, images, spot: input.spot, steps: input.steps, width: input.width, height: input.height });

/** `generate` on an avatar without an endpoint: deploying, or a batch job, with what each costs. */
export async function noEndpointHint(ctx: Context, backend: Backend, input: GenerateInput): Promise<string> {
  const gpu = ctx.config.values.gpu;
  const version = await backend.registry.get(input.name);
  const deploy = deployEstimate({ gpu });
  const deployText = `\`avatar deploy ${input.name}\` (ready in ≈ ${deploy.readyInMinutes.low}–${deploy.readyInMinutes.high} min, then ≈ ${formatUsd(deploy.usdPerHour)}/h until \`avatar down ${input.name}\`)`;
  if (!version) return `Run ${deployText} first.`;
  const images = input.prompts.length * input.numImages;
  const batch = estimateFor({ ...input, gpu, spot: false }, await pipelineOf(ctx, backend, version), images);
  const minutes = `${Math.round(batch.hours.low * 60)}–${Math.round(batch.hours.high * 60)} min`;
  return `Run ${deployText} first, or add --no-endpoint: a batch job makes these ${images} image${images === 1 ? "" : "s"} with nothing left running (≈ ${minutes}, ≈ ${formatUsd(batch.usd.low)}–${formatUsd(batch.usd.high).slice(1)}; estimates at list prices of ${batch.pricesAsOf}).`;
}

/** outputs/<stamp> not used yet (a generation in the same second gets <stamp>-2 …). */
async function freeStamp(backend: Backend, name: string): Promise<string> {
  const stamp = newRunId();
  for (let n = 1; n <= 100; n++) {
    const candidate = n === 1 ? stamp : `${stamp}-${n}`;
    if (!(await backend.store.exists(`${outputsKey(name, candidate)}/${INPUT}`))) return candidate;
  }
  throw new AvatarError("ALREADY_EXISTS", `Too many generations of ${name} in the same second.`);
}

export async function generateWithoutEndpoint(ctx: Context, backend: Backend, input: BatchGenerateInput): Promise<BatchGenerateResult> {
  if (!backend.batch) throw notAvailable(input.name);
  const version =
    (await backend.registry.get(input.name, input.version)) ??
    (isOffline(backend) ? ({ modelId: `avatar-${input.name}`, name: input.name, versionId: input.version ?? "default", runId: "", artifactUri: "", aliases: [], labels: {}, createdAt: "" } satisfies ModelVersion) : undefined);
  if (!version) {
    throw new AvatarError("NOT_FOUND", `${input.name} has no registered model${input.version ? ` version ${input.version}` : ""}.`, {
      hint: `Train one with \`avatar train ./selfies --name ${input.name}\`, or list versions with \`avatar status ${input.name}\`.`,
    });
  }
  const images = planImages(input);
  const estimate = estimateFor(input, await pipelineOf(ctx, backend, version), images.length);
  const stamp = await freeStamp(backend, input.name);
  const folder = outputsKey(input.name, stamp);
  const parameters = sharedParameters(input);
  const spec: BatchJobSpec = {
    name: input.name,
    stamp,
    version,
    gpu: input.gpu,
    spot: input.spot,
    labels: { ...resourceLabels(input.name, version.runId || undefined), "avatar-batch": stamp },
    inputKey: `${folder}/${INPUT}`,
    outputKey: folder,
    modelParameters: parameters,
  };
  const outputs = `${backend.store.uri(folder)}/`;
  const base = { stamp, outputs, planned: images.length, estimate, failed: [] };
  // The one line of cost before a paid action; on a terminal, a question first (--yes skips it).
  await confirmCost(ctx, estimate, input.name, `Generate ${images.length} image${images.length === 1 ? "" : "s"} of ${input.name} with a batch job`);
  if (ctx.flags.dryRun) {
    const upload: PlannedRequest = { service: "Cloud Storage", method: "upload", request: { objects: [backend.store.uri(spec.inputKey), backend.store.uri(`${folder}/${RECORD}`)] }, note: `${images.length} instances, one image each` };
    return { ...base, dryRun: true, requests: [upload, ...(await backend.batch.plan(spec))] };
  }
  const record: BatchRecord = { schema: 1, name: input.name, stamp, versionId: version.versionId, images, parameters, ...(input.negativePrompt ? { negativePrompt: input.negativePrompt } : {}) };
  const lines = images.map((image) => batchInstance(image, parameters, input.negativePrompt));
  await backend.store.put(spec.inputKey, Buffer.from(instancesJsonl(lines)), { contentType: "application/jsonl" });
  await backend.store.put(`${folder}/${RECORD}`, Buffer.from(`${JSON.stringify(record, null, 2)}\n`), { contentType: "application/json" });
  const job = await backend.batch.launch(spec);
  ctx.out.info(`Launched batch job ${job.id} of ${input.name} v${version.versionId}: ${images.length} image${images.length === 1 ? "" : "s"}, inputs and outputs in ${outputs}`);
  return { ...(await finishBatch(ctx, backend, record, job, input)), estimate };
}

/** `--collect <stamp>`: wait for (or read) the batch job of an earlier `--no-endpoint` and write its files. */
export async function collectBatch(ctx: Context, backend: Backend, input: { name: string; stamp: string; outDir: string; contactSheet: boolean; likeness?: boolean }): Promise<BatchGenerateResult> {
  if (!backend.batch) throw notAvailable(input.name);
  const folder = outputsKey(input.name, input.stamp);
  let record: BatchRecord;
  try {
    record = JSON.parse(await readText(await backend.store.read(`${folder}/${RECORD}`))) as BatchRecord;
  } catch (error) {
    if (!(error instanceof AvatarError && error.code === "NOT_FOUND")) throw error;
    throw new AvatarError("NOT_FOUND", `No batch generation ${input.stamp} of ${input.name} in ${backend.store.uri(folder)}/.`, { hint: `\`avatar status ${input.name}\` lists the batch jobs and their stamps.` });
  }
  const job = (await backend.batch.list({ name: input.name })).filter((j) => j.stamp === input.stamp).at(-1);
  if (!job) throw new AvatarError("NOT_FOUND", `No batch job of ${input.name} is labelled avatar-batch=${input.stamp}.`, { hint: `\`avatar status ${input.name}\` lists the batch jobs.` });
  return finishBatch(ctx, backend, record, job, input);
}

async function finishBatch(ctx: Context, backend: Backend, record: BatchRecord, launched: BatchJob, input: { outDir: string; contactSheet: boolean; likeness?: boolean }): Promise<BatchGenerateResult> {
  const job = await waitForBatch(ctx, backend, record, launched);
  const outputs = `${backend.store.uri(outputsKey(record.name, record.stamp))}/`;
  const results = await readResults(backend, record, job);
  const dir = await newOutputFolder(resolve(ctx.cwd, input.outDir, record.name), record.stamp);
  const images = [];
  const failed: FailedImage[] = [];
  for (const image of record.images) {
    const found = results.bySeed.get(image.seed);
    if (found && "prediction" in found) images.push(await writePrediction(dir, image.index + 1, image.raw, image.prompt, image.seed, found.prediction));
    else failed.push({ position: image.index + 1, prompt: image.prompt, seed: image.seed, error: found?.error ?? results.jobErrors ?? job.error ?? `no result in the job's output (job ${job.phase})` });
  }
  if (images.length === 0) {
    await rmdir(dir).catch(() => undefined);
    throw new AvatarError("REMOTE_FAILED", `Batch job ${job.id} ${job.phase}: no image came back${failed[0] ? ` (${failed[0].error})` : ""}.`, {
      hint: `Its inputs and output are in ${outputs}; the container's logs are in Cloud Logging (Vertex AI › Batch predictions › ${job.id}).`,
    });
  }
  const contactSheet = await finishOutputs(ctx, record.name, dir, images, input.contactSheet, input.likeness === false ? undefined : backend);
  for (const f of failed) ctx.out.warn(`image ${f.position} (${f.prompt}, seed ${f.seed}) failed: ${f.error}`);
  const stored = await storeOutputs(ctx, backend, record.name, dir, record.stamp);
  return { dryRun: false, stamp: record.stamp, outputs, planned: record.images.length, job, dir, images, ...(contactSheet ? { contactSheet } : {}), stored, failed };
}

/** Follows the job with a progress bar; Ctrl-C leaves it running and says how to pick it up. */
async function waitForBatch(ctx: Context, backend: Backend, record: BatchRecord, job: BatchJob): Promise<BatchJob> {
  const total = record.images.length;
  const progress = ctx.out.progress(`Batch job ${job.id}`, total, "steps");
  const stopNote = ctx.keepsRunning(`batch job ${job.id} of ${record.name} (\`avatar status ${record.name}\` shows it)`);
  let phase = "";
  try {
    const ended = await backend.batch!.wait(job.id, {
      signal: ctx.signal,
      onProgress: (now) => {
        if (now.phase !== phase) ctx.out.detail(`batch job ${(phase = now.phase)}`);
        progress.update(Math.min(total, Math.max(0, now.counts.succeeded) + Math.max(0, now.counts.failed)));
      },
    });
    progress.done();
    if (ctx.signal.aborted) {
      throw new AvatarError("INTERRUPTED", `Interrupted; batch job ${job.id} keeps running on Vertex AI (and bills until it ends).`, {
        hint: `\`avatar status ${record.name}\` shows it; \`avatar generate ${record.name} --collect ${record.stamp}\` writes its images once it is done.`,
      });
    }
    return ended;
  } finally {
    stopNote();
  }
}

interface Results {
  bySeed: Map<number, { prediction: Prediction } | { error: string }>;
  /** Job-level error lines (errors_stats), joined: the error of images with no line of their own. */
  jobErrors?: string;
}

/** Every line of every object in the job's output folder (core/batch-spec.ts: names and shapes). */
async function readResults(backend: Backend, record: BatchRecord, job: BatchJob): Promise<Results> {
  const folder = outputsKey(record.name, record.stamp);
  const dir = job.outputKey ?? (await backend.store.list(`${folder}/prediction-`)).map((o) => o.key.split("/").slice(0, -1).join("/")).sort().at(-1);
  const bySeed: Results["bySeed"] = new Map();
  const stats: string[] = [];
  if (!dir) return { bySeed };
  for (const object of await backend.store.list(`${dir}/`)) {
    for (const line of (await readText(await backend.store.read(object.key))).split("\n")) {
      const parsed = parseOutputLine(line);
      if (parsed?.kind === "stats") stats.push(`${parsed.message}${parsed.count > 1 ? ` (${parsed.count}×)` : ""}`);
      if (parsed?.kind !== "prediction" && parsed?.kind !== "error") continue;
      const seed = instanceSeed(parsed.instance) ?? (parsed.kind === "prediction" ? Number(parsed.prediction.seed) : undefined);
      if (seed === undefined || !Number.isSafeInteger(seed)) continue;
      // A retried instance may have both: its image wins.
      if (parsed.kind === "prediction") bySeed.set(seed, { prediction: parsed.prediction as Prediction });
      else if (!bySeed.has(seed)) bySeed.set(seed, { error: parsed.message });
    }
  }
  return { bySeed, ...(stats.length ? { jobErrors: stats.join("; ") } : {}) };
}
