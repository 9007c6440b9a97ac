// Training on Vertex: a CustomJob running the trainer package from Cloud Storage FUSE in the Hugging
// Face training DLC. The job is the record: found again by its labels, its state read from Vertex.
// The trainer appends its log lines to <run>/logs/trainer.log in the bucket (--log-file through the
// FUSE mount; its stdout also reaches Cloud Logging): `avatar logs` prints that object and the
// wait reads its step lines for progress. Before the first line, progress comes from the newest
// complete checkpoint.
import { text as readText } from "node:stream/consumers";
import { setTimeout as sleep } from "node:timers/promises";
import { AvatarError } from "../../core/errors.ts";
import { runCheckpointKey, runLogKey, runModelKey } from "../../core/run-keys.ts";
import { parseTrainerLine, type TrainerProgress } from "../../core/trainer-args.ts";
import {
  avatarFilter, customJobName, gpuOfAccelerator, isoTime, jobPhase, jobStateOf, locationName, resourceId, trainerManifestKey,
} from "../../core/vertex-names.ts";
import { createCustomJobRequest, trainImage, VERTEX_BASE_HINT, vertexBaseProblem, type PlannedRequest } from "../../core/vertex-specs.ts";
import type { LogOptions, TrainingJob, TrainingJobSpec, TrainingService, WaitOptions } from "../backend.ts";
import { errorContext, isNotFound, readRetrying, type VertexContext } from "./context.ts";
import { mapVertexError } from "./errors.ts";
import { ensureTrainerPackage, loadTrainerPackage, trainerPackageKeys, type TrainerPackage } from "./trainer-package.ts";

interface CustomJobLike {
  name?: string | null;
  state?: string | number | null;
  labels?: Record<string, string> | null;
  createTime?: { seconds?: string | number | null; nanos?: number | null } | null;
  startTime?: { seconds?: string | number | null; nanos?: number | null } | null;
  endTime?: { seconds?: string | number | null; nanos?: number | null } | null;
  error?: { code?: number | null; message?: string | null } | null;
  jobSpec?: {
    workerPoolSpecs?: { containerSpec?: { args?: string[] | null } | null; machineSpec?: { acceleratorType?: string | number | null } | null }[] | null;
    scheduling?: { strategy?: string | number | null } | null;
  } | null;
}

const TERMINAL = new Set(["succeeded", "failed", "cancelled"]);

export class VertexTraining implements TrainingService {
  readonly #v: VertexContext;

  constructor(vctx: VertexContext) {
    this.#v = vctx;
  }

  /** templates/trainer/avatar_trainer/*.py (trainer-package.ts: shared with the doctor's smoke job). */
  trainerPackage(): Promise<TrainerPackage> {
    return loadTrainerPackage();
  }

  async #request(spec: TrainingJobSpec, pkg: TrainerPackage) {
    const problem = vertexBaseProblem(spec.trainer.base, this.#v.emulated);
    if (problem) {
      throw new AvatarError("BAD_INPUT", `--base ${problem}.`, { hint: VERTEX_BASE_HINT });
    }
    return createCustomJobRequest(this.#v.loc, {
      bucket: this.#v.bucket,
      displayName: spec.displayName,
      labels: spec.labels,
      gpu: spec.gpu,
      spot: spec.spot,
      timeoutSeconds: spec.timeoutSeconds,
      imageUri: trainImage(this.#v.env),
      trainerVersion: pkg.version,
      trainer: spec.trainer,
      datasetKey: spec.datasetKey,
      modelKey: spec.modelKey,
      checkpointKey: spec.checkpointKey,
    });
  }

  async plan(spec: TrainingJobSpec): Promise<PlannedRequest[]> {
    const pkg = await this.trainerPackage();
    const request = await this.#request(spec, pkg);
    const planned: PlannedRequest[] = [];
    if (!(await this.#v.store.exists(trainerManifestKey(pkg.version)))) {
      planned.push({
        service: "Cloud Storage",
        method: "upload",
        request: { objects: trainerPackageKeys(pkg).map((key) => this.#v.store.uri(key)) },
        note: `trainer package ${pkg.version}, once per version`,
      });
    }
    planned.push({ service: "JobService", method: "CreateCustomJob", request });
    return planned;
  }

  async launch(spec: TrainingJobSpec): Promise<TrainingJob> {
    const pkg = await this.trainerPackage();
    const request = await this.#request(spec, pkg);
    // A job of this run that is already queued or running is the one to follow, not a second one.
    const same = (await this.list({ name: spec.name })).find((j) => j.runId === spec.runId && !TERMINAL.has(j.state));
    if (same) return same;
    await ensureTrainerPackage(this.#v.store, pkg);
    const jobs = await this.#v.clients.jobs();
    try {
      const [job] = await jobs.createCustomJob(request);
      return this.#toJob(job as CustomJobLike);
    } catch (error) {
      throw mapVertexError(error, errorContext(this.#v, "creating the training job", { kind: "training", gpu: spec.gpu, spot: spec.spot }));
    }
  }

  #toJob(job: CustomJobLike): TrainingJob {
    const labels = { ...(job.labels ?? {}) };
    const name = labels.avatar ?? "";
    const runId = labels["avatar-run"] ?? "";
    const state = jobStateOf(job.state);
    const out: TrainingJob = {
      id: resourceId(job.name ?? ""),
      name,
      runId,
      state,
      labels,
      createdAt: isoTime(job.createTime) ?? new Date().toISOString(),
      modelUri: name && runId ? this.#v.store.uri(runModelKey(name, runId)) : "",
    };
    const ended = isoTime(job.endTime);
    if (ended) out.endedAt = ended;
    // What it bills: the machine from its spec (Spot is Scheduling.Strategy SPOT, 4), from when it started.
    const gpu = gpuOfAccelerator(job.jobSpec?.workerPoolSpecs?.[0]?.machineSpec?.acceleratorType);
    if (gpu) out.gpu = gpu;
    const strategy = job.jobSpec?.scheduling?.strategy;
    if (gpu) out.spot = strategy === "SPOT" || strategy === 4;
    const started = isoTime(job.startTime);
    if (started) out.startedAt = started;
    if ((state === "failed" || state === "cancelled") && job.error?.message) out.error = job.error.message;
    return out;
  }

  async #getRaw(id: string): Promise<CustomJobLike | undefined> {
    const jobs = await this.#v.clients.jobs();
    try {
      const [job] = await readRetrying(this.#v, `reading training job ${id}`, () => jobs.getCustomJob({ name: customJobName(this.#v.loc, id) }));
      return job as CustomJobLike;
    } catch (error) {
      if (isNotFound(error)) return undefined;
      throw mapVertexError(error, errorContext(this.#v, `reading training job ${id}`));
    }
  }

  /**
   * The trainer's log lines so far, or undefined while there is no log object. Only whole lines:
   * a line still being written is left for the next read.
   */
  async #logLines(job: TrainingJob): Promise<string[] | undefined> {
    if (!job.name || !job.runId) return undefined;
    const key = runLogKey(job.name, job.runId);
    let text: string;
    try {
      // Decoded as a whole: a multi-byte character split across chunks stays one character.
      text = await readRetrying(this.#v, "reading the trainer log", async () => readText(await this.#v.store.read(key)));
    } catch (error) {
      if (error instanceof AvatarError && error.code === "NOT_FOUND") return undefined;
      throw error;
    }
    return text.slice(0, text.lastIndexOf("\n") + 1).split("\n").filter((line) => line.trim() !== "");
  }

  /** The newest step line of the log; before there is one, the newest complete checkpoint. */
  async #progress(job: TrainingJob, raw: CustomJobLike, lines?: string[]): Promise<TrainerProgress | undefined> {
    const args = raw.jobSpec?.workerPoolSpecs?.[0]?.containerSpec?.args ?? [];
    const total = Number(args[args.indexOf("--steps") + 1]);
    if (!job.name || !job.runId || !Number.isFinite(total) || args.indexOf("--steps") < 0) return undefined;
    if (job.state === "succeeded") return { step: total, total };
    try {
      for (const line of [...(lines ?? (await this.#logLines(job)) ?? [])].reverse()) {
        const parsed = parseTrainerLine(line);
        if (parsed?.kind === "step") return parsed.progress;
      }
      let step = 0;
      for (const o of await this.#v.store.list(`${runCheckpointKey(job.name, job.runId)}/`)) {
        const m = /checkpoint-(\d+)\/COMPLETE$/.exec(o.key);
        if (m) step = Math.max(step, Number(m[1]));
      }
      return { step, total };
    } catch {
      return undefined; // progress is a nicety; the job state is what counts
    }
  }

  async get(id: string): Promise<TrainingJob | undefined> {
    const raw = await this.#getRaw(id);
    if (!raw) return undefined;
    const job = this.#toJob(raw);
    if (job.state === "running") job.progress = await this.#progress(job, raw);
    return job;
  }

  async list(filter: { name?: string } = {}): Promise<TrainingJob[]> {
    const jobs = await this.#v.clients.jobs();
    let raw: CustomJobLike[];
    try {
      // No pageSize: the client pages through everything itself (and stays quiet about it).
      [raw] = (await readRetrying(this.#v, "listing training jobs", () => jobs.listCustomJobs({ parent: locationName(this.#v.loc), filter: avatarFilter(filter.name) }))) as unknown as [CustomJobLike[]];
    } catch (error) {
      throw mapVertexError(error, errorContext(this.#v, "listing training jobs"));
    }
    const mine = raw.filter((j) => j.labels?.avatar && j.labels["avatar-run"] && (!filter.name || j.labels.avatar === filter.name));
    const out = await Promise.all(
      mine.map(async (r) => {
        const job = this.#toJob(r);
        if (job.state === "running") job.progress = await this.#progress(job, r);
        return job;
      }),
    );
    return out.sort((a, b) => a.runId.localeCompare(b.runId) || a.createdAt.localeCompare(b.createdAt));
  }

  async wait(id: string, options: WaitOptions = {}): Promise<TrainingJob> {
    let phase = "";
    let lastStep = -1;
    let seenLines = 0;
    for (;;) {
      const raw = await this.#getRaw(id);
      if (!raw) throw new AvatarError("NOT_FOUND", `Training job ${id} is gone from Vertex AI.`, { hint: "`avatar status <name>` lists the runs." });
      const job = this.#toJob(raw);
      const now = jobPhase(raw.state);
      if (now !== phase) {
        phase = now;
        options.onPhase?.(`vertex job ${now}`);
      }
      if (job.state === "running" || job.state === "succeeded") {
        const lines = await this.#logLines(job).catch(() => undefined);
        // New log lines read like the local trainer's stdout: detail lines, trainer phases.
        for (const line of lines?.slice(seenLines) ?? []) {
          options.onLine?.(line);
          const parsed = parseTrainerLine(line);
          if (parsed?.kind === "phase") options.onPhase?.(parsed.fields.phase ?? "");
        }
        seenLines = Math.max(seenLines, lines?.length ?? 0);
        const progress = await this.#progress(job, raw, lines);
        if (progress && progress.step !== lastStep) {
          lastStep = progress.step;
          job.progress = progress;
          options.onProgress?.(progress);
        }
      }
      if (TERMINAL.has(job.state) || options.signal?.aborted) return job;
      try {
        await sleep(this.#v.poll.jobMs, undefined, { signal: options.signal });
      } catch {
        return job; // interrupted: the job keeps running on Vertex
      }
    }
  }

  async cancel(id: string): Promise<void> {
    const jobs = await this.#v.clients.jobs();
    try {
      await jobs.cancelCustomJob({ name: customJobName(this.#v.loc, id) });
    } catch (error) {
      if (isNotFound(error)) return;
      throw mapVertexError(error, errorContext(this.#v, `cancelling training job ${id}`));
    }
  }

  /**
   * The trainer's log from the bucket after what Vertex tells about the job. With --tail, only the
   * last log lines. Before the trainer has written anything, where else to look. With follow, new
   * lines as they reach the bucket, until the job ends.
   */
  async logs(id: string, options: LogOptions): Promise<void> {
    const raw = await this.#getRaw(id);
    if (!raw) throw new AvatarError("NOT_FOUND", `No training job ${id} on Vertex AI.`, { hint: "`avatar status <name>` lists the runs." });
    let job = this.#toJob(raw);
    const lines = await this.#logLines(job);
    if (lines && options.tail) {
      for (const line of lines.slice(-options.tail)) options.onLine(line);
    } else {
      for (const line of await this.#logHeader(job, raw, lines)) options.onLine(line);
    }
    let seen = lines?.length ?? 0;
    while (options.follow && !TERMINAL.has(job.state) && !options.signal?.aborted) {
      try {
        await sleep(this.#v.poll.jobMs, undefined, { signal: options.signal });
      } catch {
        return; // interrupted: stop following, the job goes on
      }
      const now = await this.#getRaw(id);
      if (!now) return;
      job = this.#toJob(now);
      // Read after the state: once the job has ended, this read has every line the trainer wrote.
      const latest = (await this.#logLines(job)) ?? [];
      for (const line of latest.slice(seen)) options.onLine(line);
      seen = Math.max(seen, latest.length);
    }
  }

  async #logHeader(job: TrainingJob, raw: CustomJobLike, lines: string[] | undefined): Promise<string[]> {
    const progress = await this.#progress(job, raw, lines);
    const { project, region } = this.#v.loc;
    const logUri = job.name && job.runId ? this.#v.store.uri(runLogKey(job.name, job.runId)) : "";
    return [
      `job       ${raw.name} (${jobPhase(raw.state)})`,
      `run       ${job.runId}  model ${job.modelUri}`,
      ...(progress ? [`progress  step ${progress.step}/${progress.total}`] : []),
      ...(raw.error?.message ? [`error     ${raw.error.message}`] : []),
      ...(lines
        ? [`log       ${logUri}`, "", ...lines]
        : [
            `No trainer log at ${logUri} yet: the job has not started training.`,
            "The container's whole output (including anything before the trainer started) is in Cloud Logging:",
            `  gcloud ai custom-jobs stream-logs ${job.id} --project=${project} --region=${region}`,
          ]),
    ];
  }
}
