// avatar train: prepare → zip → upload → launch the trainer → wait (detachable) → register.
import type { Backend, PlannedRequest, TrainingJob, TrainingJobSpec } from "../backends/backend.ts";
import type { Context } from "../context.ts";
import { AvatarError } from "../core/errors.ts";
import { newRunId, resourceLabels } from "../core/names.ts";
import { baseModelPresets } from "../core/presets.ts";
import { runCheckpointKey, runModelKey } from "../core/run-keys.ts";
import { datasetKey } from "../core/store-keys.ts";
import { formatDuration } from "../ui/format.ts";
import { hasCudaGpu, resolveBase } from "./base-model.ts";
import { registerRun, type RegisterResult } from "./register.ts";

export interface TrainInput {
  name: string;
  /** The dataset already uploaded (from the upload workflow). */
  dataset: { sha256: string; images: number };
  base: string;
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
      throw new AvatarError("REMOTE_FAILED", `Training ${job.state}${job.error ? `: ${job.error}` : ""}.`, { hint: `See \`avatar logs ${job.name} --run ${job.runId}\`.` });
    }
    return job;
  } finally {
    ctx.signal.removeEventListener("abort", onAbort);
    stopNote();
  }
}

export async function trainAvatar(ctx: Context, backend: Backend, input: TrainInput): Promise<TrainResult> {
  const started = Date.now();
  const base = resolveBase(input.base, ctx.cwd);
  await checkTrainable(ctx, backend, base, input.force);
  const presetSteps = Object.values(baseModelPresets).find((p) => p.hubId === base.base)?.defaultSteps;
  const steps = input.steps ?? presetSteps ?? 1000;
  // An interrupted run of the same dataset resumes (same run id → same checkpoint directory).
  const datasetLabel = input.dataset.sha256.slice(0, 32);
  const previous = (await backend.training.list({ name: input.name })).filter(
    (j) => j.labels["avatar-dataset"] === datasetLabel && (j.state === "interrupted" || j.state === "running" || j.state === "queued"),
  );
  const resumable = previous.at(-1);
  const runId = resumable?.runId ?? newRunId();
  const labels = { ...resourceLabels(input.name, runId), "avatar-dataset": datasetLabel };
  const spec: TrainingJobSpec = {
    name: input.name,
    runId,
    displayName: `avatar-${input.name}-${runId}`,
    labels,
    gpu: ctx.config.values.gpu,
    spot: input.spot,
    timeoutSeconds: 3 * 3600,
    datasetKey: datasetKey(input.name, input.dataset.sha256),
    modelKey: runModelKey(input.name, runId),
    checkpointKey: runCheckpointKey(input.name, runId),
    trainer: {
      base: base.base,
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
      flip: true,
      name: input.name,
      runId,
      datasetSha256: input.dataset.sha256,
    },
  };
  if (ctx.flags.dryRun) {
    const requests = backend.training.plan ? await backend.training.plan(spec) : undefined;
    return { job: { id: spec.displayName, name: input.name, runId, state: "queued", labels, createdAt: new Date().toISOString(), modelUri: backend.store.uri(spec.modelKey) }, resumed: false, seconds: 0, ...(requests ? { requests } : {}) };
  }
  // A job of the same photos still on its way (on Vertex it outlives an interrupted CLI): follow it.
  const active = resumable?.state === "running" || resumable?.state === "queued";
  const launched = active ? resumable : await backend.training.launch(spec);
  if (active) ctx.out.info(`Run ${runId} of ${input.name} is already ${resumable.state}; following it.`);
  else if (resumable) ctx.out.info(`Resuming run ${runId} of ${input.name} from its last checkpoint.`);
  else ctx.out.success(`Launched training run ${runId} (${steps} steps on ${base.tiny ? "the tiny demo model" : base.base})`);
  if (input.detach) return { job: launched, resumed: Boolean(resumable), seconds: (Date.now() - started) / 1000 };
  const job = await waitForTraining(ctx, backend, launched.id);
  ctx.out.success(`Trained ${input.name} in ${formatDuration(Date.now() - started)}`);
  const registered = input.register ? await registerRun(ctx, backend, { name: input.name, runId }) : undefined;
  return { job, resumed: Boolean(resumable), registered, seconds: (Date.now() - started) / 1000 };
}
