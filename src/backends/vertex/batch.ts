// Batch generation on Vertex: a BatchPredictionJob of the avatar's model version over a JSONL file
// in the bucket (core/batch-spec.ts has the request and what is known about how Vertex runs it).
// The job is the record: found again by its labels (avatar, avatar-batch=<stamp>).
import { setTimeout as sleep } from "node:timers/promises";
import { batchPredictionJobRequest } from "../../core/batch-spec.ts";
import { AvatarError } from "../../core/errors.ts";
import { avatarFilter, gpuOfAccelerator, isoTime, jobPhase, locationName, resourceId, type VertexLocation } from "../../core/vertex-names.ts";
import type { PlannedRequest } from "../../core/vertex-specs.ts";
import type { JobState } from "../backend.ts";
import type { BatchJob, BatchJobSpec, BatchService } from "../batch.ts";
import { vertexClientOptions, type JobServiceClient } from "./clients.ts";
import { errorContext, isNotFound, readRetrying, type VertexContext } from "./context.ts";
import { mapVertexError } from "./errors.ts";

interface BatchJobLike {
  name?: string | null;
  state?: string | number | null;
  labels?: Record<string, string> | null;
  createTime?: { seconds?: string | number | null; nanos?: number | null } | null;
  endTime?: { seconds?: string | number | null; nanos?: number | null } | null;
  error?: { message?: string | null } | null;
  modelVersionId?: string | null;
  outputInfo?: { gcsOutputDirectory?: string | null } | null;
  completionStats?: { successfulCount?: string | number | null; failedCount?: string | number | null; incompleteCount?: string | number | null } | null;
  dedicatedResources?: { machineSpec?: { acceleratorType?: string | number | null } | null; spot?: boolean | null } | null;
}

const batchJobName = (loc: VertexLocation, id: string) => `${locationName(loc)}/batchPredictionJobs/${id}`;

/** JobState → the backend's states. PARTIALLY_SUCCEEDED ends with output to read: succeeded, with failures counted. */
function stateOf(state: string | number | null | undefined): JobState {
  switch (jobPhase(state)) {
    case "succeeded":
    case "partially_succeeded":
      return "succeeded";
    case "failed":
    case "expired":
      return "failed";
    case "cancelled":
      return "cancelled";
    case "running":
    case "cancelling":
    case "updating":
    case "paused":
      return "running";
    default:
      return "queued";
  }
}

const TERMINAL = new Set<JobState>(["succeeded", "failed", "cancelled"]);

export class VertexBatch implements BatchService {
  readonly #v: VertexContext;
  #beta: Promise<JobServiceClient> | undefined;

  constructor(vctx: VertexContext) {
    this.#v = vctx;
  }

  /** v1beta1's JobService: the only API version whose BatchDedicatedResources has `spot`. */
  #betaJobs(): Promise<JobServiceClient> {
    this.#beta ??= (async () => {
      const { v1beta1 } = await this.#v.clients.module();
      const options = await vertexClientOptions({ region: this.#v.loc.region, env: this.#v.env });
      return new v1beta1.JobServiceClient(options as never) as unknown as JobServiceClient;
    })();
    return this.#beta;
  }

  #request(spec: BatchJobSpec) {
    return batchPredictionJobRequest(this.#v.loc, {
      name: spec.name,
      stamp: spec.stamp,
      versionId: spec.version.versionId,
      gpu: spec.gpu,
      spot: spec.spot,
      labels: spec.labels,
      inputUri: this.#v.store.uri(spec.inputKey),
      outputUriPrefix: `${this.#v.store.uri(spec.outputKey)}/`,
      modelParameters: spec.modelParameters,
    });
  }

  async plan(spec: BatchJobSpec): Promise<PlannedRequest[]> {
    return [{ service: spec.spot ? "JobService (v1beta1)" : "JobService", method: "CreateBatchPredictionJob", request: this.#request(spec), ...(spec.spot ? { note: "Spot VMs: only v1beta1 has dedicatedResources.spot" } : {}) }];
  }

  async launch(spec: BatchJobSpec): Promise<BatchJob> {
    const request = this.#request(spec);
    const { helpers } = await this.#v.clients.module();
    const parameters = helpers.toValue(request.batchPredictionJob.modelParameters);
    const jobs = spec.spot ? await this.#betaJobs() : await this.#v.clients.jobs();
    try {
      const [job] = await jobs.createBatchPredictionJob({ ...request, batchPredictionJob: { ...request.batchPredictionJob, modelParameters: parameters } } as never);
      return this.#toJob(job as BatchJobLike);
    } catch (error) {
      throw mapVertexError(error, errorContext(this.#v, "creating the batch prediction job", { gpu: spec.gpu }));
    }
  }

  #toJob(raw: BatchJobLike): BatchJob {
    const labels = { ...(raw.labels ?? {}) };
    const stats = raw.completionStats ?? {};
    const job: BatchJob = {
      id: resourceId(raw.name ?? ""),
      name: labels.avatar ?? "",
      stamp: labels["avatar-batch"] ?? "",
      state: stateOf(raw.state),
      phase: jobPhase(raw.state),
      labels,
      createdAt: isoTime(raw.createTime) ?? "",
      counts: { succeeded: Number(stats.successfulCount ?? 0), failed: Number(stats.failedCount ?? 0), incomplete: Number(stats.incompleteCount ?? 0) },
    };
    const ended = isoTime(raw.endTime);
    if (ended) job.endedAt = ended;
    if (raw.error?.message) job.error = raw.error.message;
    if (raw.modelVersionId) job.modelVersion = String(raw.modelVersionId);
    const gpu = gpuOfAccelerator(raw.dedicatedResources?.machineSpec?.acceleratorType);
    if (gpu) job.gpu = gpu;
    if (raw.dedicatedResources?.spot) job.spot = true;
    // The output folder as a store key: Vertex names it inside the prefix the request gave.
    const dir = raw.outputInfo?.gcsOutputDirectory?.replace(/\/+$/, "");
    const root = `${this.#v.store.rootUri}/`;
    if (dir?.startsWith(root)) job.outputKey = dir.slice(root.length);
    return job;
  }

  async #getRaw(id: string): Promise<BatchJobLike | undefined> {
    const jobs = await this.#v.clients.jobs();
    try {
      const [job] = await readRetrying(this.#v, `reading batch job ${id}`, () => jobs.getBatchPredictionJob({ name: batchJobName(this.#v.loc, id) }));
      return job as BatchJobLike;
    } catch (error) {
      if (isNotFound(error)) return undefined;
      throw mapVertexError(error, errorContext(this.#v, `reading batch job ${id}`));
    }
  }

  async get(id: string): Promise<BatchJob | undefined> {
    const raw = await this.#getRaw(id);
    return raw ? this.#toJob(raw) : undefined;
  }

  async list(filter: { name?: string } = {}): Promise<BatchJob[]> {
    const jobs = await this.#v.clients.jobs();
    let raw: BatchJobLike[];
    try {
      [raw] = (await readRetrying(this.#v, "listing batch jobs", () => jobs.listBatchPredictionJobs({ parent: locationName(this.#v.loc), filter: avatarFilter(filter.name) }))) as unknown as [BatchJobLike[]];
    } catch (error) {
      throw mapVertexError(error, errorContext(this.#v, "listing batch jobs"));
    }
    return raw
      .filter((j) => j.labels?.avatar && j.labels["avatar-batch"] && (!filter.name || j.labels.avatar === filter.name))
      .map((j) => this.#toJob(j))
      .sort((a, b) => a.stamp.localeCompare(b.stamp) || a.createdAt.localeCompare(b.createdAt));
  }

  async wait(id: string, options: { signal?: AbortSignal; onProgress?: (job: BatchJob) => void } = {}): Promise<BatchJob> {
    let seen = "";
    for (;;) {
      const raw = await this.#getRaw(id);
      if (!raw) throw new AvatarError("NOT_FOUND", `Batch job ${id} is gone from Vertex AI.`, { hint: "`avatar status <name>` lists the batch jobs." });
      const job = this.#toJob(raw);
      const now = `${job.phase} ${job.counts.succeeded} ${job.counts.failed}`;
      if (now !== seen) {
        seen = now;
        options.onProgress?.(job);
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
      await jobs.cancelBatchPredictionJob({ name: batchJobName(this.#v.loc, id) });
    } catch (error) {
      if (isNotFound(error)) return;
      throw mapVertexError(error, errorContext(this.#v, `cancelling batch job ${id}`));
    }
  }

  async close(): Promise<void> {
    const beta = this.#beta;
    this.#beta = undefined;
    await (await beta?.catch(() => undefined))?.close().catch(() => undefined);
  }
}
