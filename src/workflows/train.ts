// avatar train: prepare → zip → upload → launch the trainer → wait (detachable) → register.
import { createHash } from "node:crypto";
import { readdir } from "node:fs/promises";
import type { Backend, PlannedRequest, TrainerOptions, TrainingJob, TrainingJobSpec } from "../backends/backend.ts";
import type { Context } from "../context.ts";
import { trainingEstimate } from "../core/costs.ts";
import { AvatarError } from "../core/errors.ts";
import { newRunId, resourceLabels } from "../core/names.ts";
import { stepsFor } from "../core/presets.ts";
import { runCheckpointKey, runModelKey } from "../core/run-keys.ts";
import { datasetKey } from "../core/store-keys.ts";
import { VERTEX_BASE_HINT } from "../core/vertex-specs.ts";
import { formatDuration } from "../ui/format.ts";
import { hasCudaGpu, resolveBase } from "./base-model.ts";
import { registerRun, type RegisterResult } from "./register.ts";

export interface TrainInput {
  name: string;
  /** The dataset already uploaded (from the upload workflow). */
  dataset: { sha256: string; images: number };
  base: string;
  baseRevision?: string;
  steps?: number;
  rank: number;
  lr: number;
  seed: number;
  resolution?: number;
  token: string;
  classWord: string;
  caption: "none" | "blip";
  captionModel?: string;
  checkpointEvery?: number;
  /** Horizontal-flip augmentation (off by default: mirroring averages away a face's asymmetries). */
  flip?: boolean;
  /** Loss weight outside the face; default DEFAULT_MASK_WEIGHT, 1 = off. */
  maskWeight?: number;
  samplesEvery?: number;
  sampleSteps?: number;
  spot: boolean;
  detach: boolean;
  force: boolean;
  register: boolean;
}

export interface TrainResult {
  job: TrainingJob;
  resumed: boolean;
  registered?: RegisterResult;
  seconds: number;
  /** --dry-run on a backend with remote state: the requests that would have been sent. */
  requests?: PlannedRequest[];
}

/** Refuses a real base model on a CPU-only local backend: days of compute, not minutes. */
export async function checkTrainable(ctx: Context, backend: Backend, base: ReturnType<typeof resolveBase>, force: boolean): Promise<void> {
  const problem = backend.baseProblem?.(base.base);
  if (problem) throw new AvatarError("BAD_INPUT", `--base ${problem}.`, { hint: VERTEX_BASE_HINT });
  if (backend.kind !== "local" || base.tiny || force) return;
  if (await hasCudaGpu()) return;
  throw new AvatarError("BAD_INPUT", `Training ${base.base} on this machine's CPU would take days.`, {
    hint: "Train on Vertex (--backend vertex), use a machine with an NVIDIA GPU, try `avatar demo` (a tiny model), or pass --force to do it anyway.",
  });
}

export async function waitForTraining(ctx: Context, backend: Backend, id: string): Promise<TrainingJob> {
  const progress = ctx.out.progress("Training", undefined, "steps");
  let lastStep = 0;
  const stopNote = backend.kind === "vertex" ? ctx.keepsRunning(`training job ${id} (\`avatar status\` re-attaches)`) : () => {};
  const onAbort = () => {
    // Locally the trainer dies with us; its checkpoints make a re-run resume. On Vertex it keeps running.
    if (backend.kind === "local") void backend.training.cancel(id);
  };
  ctx.signal.addEventListener("abort", onAbort, { once: true });
  try {
    const job = await backend.training.wait(id, {
      signal: ctx.signal,
      onProgress: (p) => {
        lastStep = p.step;
        progress.update(p.step, p.total);
      },
      onPhase: (phase) => ctx.out.detail(`trainer: ${phase}`),
      onLine: (line) => ctx.out.detail(line),
    });
    progress.done();
    if (ctx.signal.aborted) {
      throw new AvatarError("INTERRUPTED", `Training interrupted at step ${lastStep}.`, {
        hint: backend.kind === "local" ? "Run the same command again to resume from the last checkpoint." : "It keeps running on Vertex; `avatar status <name> --wait` re-attaches.",
      });
    }
    if (job.state !== "succeeded") {
      // A preempted Spot job ends FAILED on Vertex; its checkpoints let the same command go on.
      const checkpoint = job.name && job.runId ? await newestCheckpoint(backend, job.name, job.runId).catch(() => 0) : 0;
      const resume = checkpoint > 0 ? `Run the same \`avatar train\` again to resume from the checkpoint at step ${checkpoint}; see ` : "See ";
      throw new AvatarError("REMOTE_FAILED", `Training ${job.state}${job.error ? `: ${job.error}` : ""}.`, { hint: `${resume}\`avatar logs ${job.name} --run ${job.runId}\`.` });
    }
    return job;
  } finally {
    ctx.signal.removeEventListener("abort", onAbort);
    stopNote();
  }
}

type RunOptions = Omit<TrainerOptions, "name" | "runId" | "datasetSha256">;

/** Background loss weight outside the face box (fal, kohya and ai-toolkit weight the subject too; README). */
export const DEFAULT_MASK_WEIGHT = 0.4;
export const CLASS_WORDS = ["person", "woman", "man"] as const;
const CLASS_LABEL = "avatar-class";

/**
 * The class word of a run: the one given; else the one of the avatar's newest earlier run (its
 * training job's label); else asked on a terminal (first train of an avatar); else "person"
 * (--no-input, CI, --json never ask).
 */
export async function resolveClassWord(ctx: Pick<Context, "prompts">, backend: Pick<Backend, "training">, name: string, given?: string): Promise<{ classWord: string; source: "flag" | "remembered" | "asked" | "default" }> {
  if (given !== undefined) return { classWord: given, source: "flag" };
  const jobs = await backend.training.list({ name }).catch(() => []);
  const remembered = jobs.map((j) => j.labels[CLASS_LABEL]).filter((w): w is string => Boolean(w)).at(-1);
  if (remembered) return { classWord: remembered, source: "remembered" };
  if (!ctx.prompts.interactive) return { classWord: "person", source: "default" };
  const classWord = await ctx.prompts.select({
    message: `Who is ${name}? (the class word the model learns the person as)`,
    flag: "--class-word",
    choices: CLASS_WORDS.map((value) => ({ value })),
    default: "person",
  });
  return { classWord, source: "asked" };
}

/** How many photos a folder holds at most (image file names at its top level): sizes the cost estimate
 * before prepare has looked at them; undefined when unknown (recursive or unreadable). */
export async function photoCountHint(dir: string, recursive: boolean): Promise<number | undefined> {
  if (recursive) return undefined;
  try {
    const entries = await readdir(dir, { withFileTypes: true });
    const n = entries.filter((e) => e.isFile() && !e.name.startsWith(".") && /\.(jpe?g|png|webp|heic|heif|avif|tiff?|bmp|gif)$/i.test(e.name)).length;
    return n || undefined;
  } catch {
    return undefined;
  }
}

function trainerOptions(input: TrainInput, base: ReturnType<typeof resolveBase>, steps: number): RunOptions {
  return {
    base: base.base,
    ...(input.baseRevision ? { baseRevision: input.baseRevision } : {}),
    pipeline: base.pipeline,
    resolution: input.resolution ?? base.resolution,
    token: input.token,
    classWord: input.classWord,
    steps,
    rank: input.rank,
    lr: input.lr,
    seed: input.seed,
    caption: input.caption,
    captionModel: input.captionModel,
    checkpointEvery: input.checkpointEvery ?? Math.max(1, Math.min(100, Math.floor(steps / 4))),
    logEvery: Math.max(1, Math.min(10, Math.floor(steps / 20))),
    gradientCheckpointing: !base.tiny,
    flip: input.flip === true,
    maskWeight: input.maskWeight ?? DEFAULT_MASK_WEIGHT,
    ...(input.samplesEvery !== undefined ? { samplesEvery: input.samplesEvery } : {}),
    ...(input.sampleSteps !== undefined ? { sampleSteps: input.sampleSteps } : {}),
  };
}

/**
 * A label value for what a checkpoint depends on (the trainer's resume fingerprint, less the
 * dataset, which has its own label): a run is resumed only with the same options, so a changed
 * --lr starts a new run instead of a job that fails on the old checkpoints. Steps may change.
 */
export function optionsFingerprint(options: RunOptions): string {
  // Samples (--samples-every, --sample-steps) do not change the weights: not part of it.
  const { base, baseRevision, resolution, token, classWord, rank, lr, seed, caption, captionModel, flip, maskWeight } = options;
  const json = JSON.stringify({ base, ...(baseRevision ? { baseRevision } : {}), resolution: resolution ?? null, token, classWord, rank, lr, seed, caption, captionModel: caption === "blip" ? (captionModel ?? null) : null, flip, maskWeight: maskWeight ?? null });
  return createHash("sha256").update(json).digest("hex").slice(0, 16);
}

/**
 * The training job's time limit: 3 h, or 1.5× the slow end of the estimate when that is longer
 * (SDXL on a T4 runs 7.5–15 s per step: 1500 steps can take over 6 h, samples included).
 */
export function trainingTimeoutSeconds(gpu: "t4" | "l4", pipeline: "sd15" | "sdxl" | undefined, steps: number): number {
  const high = trainingEstimate({ gpu, pipeline, steps, spot: false }).hours.high;
  return Math.max(3 * 3600, Math.ceil(high * 1.5 * 3600));
}

/** The newest complete checkpoint step of a run in the store, or 0. */
export async function newestCheckpoint(backend: Backend, name: string, runId: string): Promise<number> {
  let step = 0;
  for (const o of await backend.store.list(`${runCheckpointKey(name, runId)}/`)) {
    const m = /checkpoint-(\d+)\/COMPLETE$/.exec(o.key);
    if (m) step = Math.max(step, Number(m[1]));
  }
  return step;
}

/**
 * The run a new `train` of the same avatar, photos and options continues: one still queued or
 * running (follow it), one interrupted (local: resume), or one that failed or was cancelled with a
 * complete checkpoint (a preempted Spot job on Vertex ends FAILED; its checkpoints are in the bucket).
 */
async function findResumable(backend: Backend, name: string, datasetLabel: string, optionsLabel: string): Promise<{ job: TrainingJob; checkpoint: number } | undefined> {
  const same = (await backend.training.list({ name })).filter(
    (j) => j.labels["avatar-dataset"] === datasetLabel && (j.labels["avatar-options"] ?? optionsLabel) === optionsLabel,
  );
  const newest = same.at(-1);
  if (!newest) return undefined;
  if (["running", "queued", "interrupted"].includes(newest.state)) return { job: newest, checkpoint: 0 };
  if (newest.state === "failed" || newest.state === "cancelled") {
    // Only a run that never produced a model: a later job of a succeeded run id would overwrite it.
    if (same.some((j) => j.runId === newest.runId && j.state === "succeeded")) return undefined;
    const checkpoint = await newestCheckpoint(backend, name, newest.runId);
    if (checkpoint > 0) return { job: newest, checkpoint };
  }
  return undefined;
}

export async function trainAvatar(ctx: Context, backend: Backend, input: TrainInput): Promise<TrainResult> {
  const started = Date.now();
  const base = resolveBase(input.base, ctx.cwd);
  await checkTrainable(ctx, backend, base, input.force);
  const steps = stepsFor(base.base, input.steps, input.dataset.images);
  const trainer = trainerOptions(input, base, steps);
  const optionsLabel = optionsFingerprint(trainer);
  const resumable = await findResumable(backend, input.name, input.dataset.sha256.slice(0, 32), optionsLabel);
  const runId = resumable?.job.runId ?? newRunId();
  const labels: Record<string, string> = { ...resourceLabels(input.name, runId), "avatar-dataset": input.dataset.sha256.slice(0, 32), "avatar-options": optionsLabel };
  // Remembered for the avatar's next runs (resolveClassWord); only a value a label can hold.
  if (/^[a-z0-9_-]{1,63}$/.test(input.classWord)) labels[CLASS_LABEL] = input.classWord;
  const spec: TrainingJobSpec = {
    name: input.name,
    runId,
    displayName: `avatar-${input.name}-${runId}`,
    labels,
    gpu: ctx.config.values.gpu,
    spot: input.spot,
    timeoutSeconds: trainingTimeoutSeconds(ctx.config.values.gpu, base.pipeline, steps),
    datasetKey: datasetKey(input.name, input.dataset.sha256),
    modelKey: runModelKey(input.name, runId),
    checkpointKey: runCheckpointKey(input.name, runId),
    trainer: { ...trainer, name: input.name, runId, datasetSha256: input.dataset.sha256 },
  };
  if (ctx.flags.dryRun) {
    const requests = backend.training.plan ? await backend.training.plan(spec) : undefined;
    return { job: { id: spec.displayName, name: input.name, runId, state: "queued", labels, createdAt: new Date().toISOString(), modelUri: backend.store.uri(spec.modelKey) }, resumed: false, seconds: 0, ...(requests ? { requests } : {}) };
  }
  // A job of the same photos still on its way (on Vertex it outlives an interrupted CLI): follow it.
  const active = resumable?.job.state === "running" || resumable?.job.state === "queued";
  const launched = active ? resumable!.job : await backend.training.launch(spec);
  if (active) ctx.out.info(`Run ${runId} of ${input.name} is already ${resumable!.job.state}; following it.`);
  else if (resumable) ctx.out.info(`Resuming run ${runId} of ${input.name} from ${resumable.checkpoint ? `its checkpoint at step ${resumable.checkpoint}` : "its last checkpoint"}${resumable.job.state === "interrupted" ? "" : ` (the previous job ${resumable.job.state}${resumable.job.error ? `: ${resumable.job.error}` : ""})`}.`);
  else ctx.out.success(`Launched training run ${runId} (${steps} steps on ${base.tiny ? "the tiny demo model" : base.base})`);
  if (input.detach) return { job: launched, resumed: Boolean(resumable), seconds: (Date.now() - started) / 1000 };
  const job = await waitForTraining(ctx, backend, launched.id);
  ctx.out.success(`Trained ${input.name} in ${formatDuration(Date.now() - started)}`);
  // The checkpoint whose samples look most like the person becomes the model (register --checkpoint auto).
  const registered = input.register ? await registerRun(ctx, backend, { name: input.name, runId, checkpoint: { kind: "auto" } }) : undefined;
  return { job, resumed: Boolean(resumable), registered, seconds: (Date.now() - started) / 1000 };
}
