// The interface both backends implement: object store, training, model registry, serving.
// Workflows speak only this; src/backends/vertex and src/backends/local fill it in.
import type { Context } from "../context.ts";
import type { ObjectStore } from "./store.ts";
import type { BatchService } from "./batch.ts";
import type { EndpointType } from "../core/endpoint-types.ts";
import type { TrainerArgsInput, TrainerProgress } from "../core/trainer-args.ts";
import type { PlannedRequest } from "../core/vertex-specs.ts";

export type { PlannedRequest };

/** Trainer options without locations: each backend maps store keys to its own paths. */
export type TrainerOptions = Omit<TrainerArgsInput, "dataset" | "outputDir" | "checkpointDir" | "logFile">;

export type JobState = "queued" | "running" | "succeeded" | "failed" | "cancelled" | "interrupted";

export interface TrainingJobSpec {
  name: string;
  runId: string;
  displayName: string;
  labels: Record<string, string>;
  trainer: TrainerOptions;
  gpu: "t4" | "l4";
  spot: boolean;
  timeoutSeconds: number;
  /** Dataset zip, model output and checkpoint locations as store keys. */
  datasetKey: string;
  modelKey: string;
  checkpointKey: string;
}

export interface TrainingJob {
  id: string;
  name: string;
  runId: string;
  state: JobState;
  labels: Record<string, string>;
  createdAt: string;
  endedAt?: string;
  error?: string;
  modelUri: string;
  progress?: TrainerProgress;
  /** vertex: the job's GPU preset, Spot or not, and when it started running (what it bills). */
  gpu?: "t4" | "l4";
  spot?: boolean;
  startedAt?: string;
}

export interface WaitOptions {
  signal?: AbortSignal;
  onProgress?: (progress: TrainerProgress) => void;
  onPhase?: (phase: string) => void;
  onLine?: (line: string) => void;
}

export interface LogOptions {
  onLine: (line: string) => void;
  tail?: number;
  follow?: boolean;
  signal?: AbortSignal;
}

export interface TrainingService {
  launch(spec: TrainingJobSpec): Promise<TrainingJob>;
  get(id: string): Promise<TrainingJob | undefined>;
  list(filter?: { name?: string }): Promise<TrainingJob[]>;
  /** Resolves when the job ends (or the signal aborts: the job keeps running). */
  wait(id: string, options?: WaitOptions): Promise<TrainingJob>;
  cancel(id: string): Promise<void>;
  /** The run's log lines (with `tail`, the last ones); with `follow`, then every new line until the run ends or `signal` aborts. */
  logs(id: string, options: LogOptions): Promise<void>;
  /** --dry-run: the remote requests launch() would send (backends with remote state only). */
  plan?(spec: TrainingJobSpec): Promise<PlannedRequest[]>;
}

export interface ModelVersion {
  /** Registry id of the model (one per avatar). */
  modelId: string;
  name: string;
  versionId: string;
  runId: string;
  artifactUri: string;
  aliases: string[];
  labels: Record<string, string>;
  /** What the version is (pipeline, base, trigger, the checkpoint chosen and its likeness). */
  description?: string;
  createdAt: string;
}

/**
 * Whether a version holds the model folder `artifactUri` of run `runId`: a run can have a version
 * per registered checkpoint (runs/<run>/model for the last step, model-step-NNNNNN for another).
 */
export const holdsArtifact = (version: Pick<ModelVersion, "runId" | "artifactUri">, runId: string, artifactUri: string) =>
  version.runId === runId && version.artifactUri.replace(/\/+$/, "") === artifactUri.replace(/\/+$/, "");

export interface RegisterSpec {
  name: string;
  runId: string;
  /** Store key of the model directory (runs/<run>/model). */
  modelKey: string;
  labels: Record<string, string>;
  description?: string;
}

export interface ModelRegistry {
  /** Idempotent: registering the same run and model folder again returns the existing version. */
  register(spec: RegisterSpec): Promise<{ version: ModelVersion; created: boolean }>;
  list(filter?: { name?: string }): Promise<ModelVersion[]>;
  /** The default (newest) version, a version id, or a run id. */
  get(name: string, version?: string): Promise<ModelVersion | undefined>;
  /** Points `alias` at a version (taking it from the version that had it, if any): that version after the move. */
  moveAlias(name: string, alias: string, versionId: string): Promise<{ version: ModelVersion; from?: string }>;
  /** Takes `alias` off the version that has it; the version id it was on, or undefined when no version had it. */
  removeAlias(name: string, alias: string): Promise<string | undefined>;
  /** --dry-run: the remote requests moveAlias() (or removeAlias(), with versionId undefined) would send. */
  planAlias?(name: string, alias: string, versionId: string | undefined): Promise<PlannedRequest[]>;
  /** --dry-run: the remote requests register() would send. */
  plan?(spec: RegisterSpec): Promise<PlannedRequest[]>;
}

export type EndpointState = "deploying" | "ready" | "failed" | "stopped";

export interface EndpointInfo {
  id: string;
  name: string;
  state: EndpointState;
  labels: Record<string, string>;
  modelVersion?: string;
  runId?: string;
  url?: string;
  gpu?: string;
  /** When the serving model was deployed (vertex: its DeployedModel createTime): what it has billed since. */
  deployedAt?: string;
  /** vertex: where predictions go and what they may carry (core/endpoint-types.ts). */
  endpointType?: EndpointType;
  createdAt: string;
  /** A deployment still in flight (Vertex lists a deployed model only once it serves). */
  deploying?: { versionId: string; startedAt: string; operation: string; stage?: string };
}

export interface DeploySpec {
  name: string;
  version: ModelVersion;
  gpu: "t4" | "l4";
  minReplicas: number;
  maxReplicas: number;
  labels: Record<string, string>;
  /** vertex: the type of endpoint to create (default dedicated); an existing one must match. */
  endpointType?: EndpointType;  /** vertex: DeployedModel.serviceAccount, the serving container's identity (studios read the bucket with it). */
  serviceAccount?: string;
}

export interface PredictResponse {
  predictions: Record<string, unknown>[];
  deployedModelId?: string;
}

export interface ServingService {
  /**
   * confirmReplace: the new version was refused for quota while older ones serve; true undeploys
   * them first and tries again (a gap without serving).
   */
  deploy(spec: DeploySpec, options?: { signal?: AbortSignal; onStage?: (stage: string) => void; confirmReplace?: (running: string) => Promise<boolean> }): Promise<{ endpoint: EndpointInfo; reused: boolean }>;
  list(filter?: { name?: string }): Promise<EndpointInfo[]>;
  get(name: string): Promise<EndpointInfo | undefined>;
  predict(name: string, body: unknown, options?: { signal?: AbortSignal; timeoutMs?: number }): Promise<PredictResponse>;
  /** Stops serving and deletes the endpoint; false when there was nothing to stop. */
  down(name: string, options?: { signal?: AbortSignal; onStage?: (stage: string) => void }): Promise<boolean>;
  logs(name: string, options: { onLine: (line: string) => void; tail?: number }): Promise<void>;
  /** --dry-run: the remote requests deploy() would send. */
  plan?(spec: DeploySpec): Promise<PlannedRequest[]>;
  /** --dry-run: the remote requests down() would send. */
  planDown?(name: string): Promise<PlannedRequest[]>;
}

export interface Backend {
  readonly kind: "local" | "vertex";
  readonly store: ObjectStore;
  readonly training: TrainingService;
  readonly registry: ModelRegistry;
  readonly serving: ServingService;
  /** Generation without an endpoint (vertex only: a BatchPredictionJob; see batch.ts). */
  readonly batch?: BatchService;
  /**
   * Why this backend's training jobs and model servers could not load a base model, or undefined.
   * On Vertex both download it from the Hugging Face Hub: a directory on this machine (or in a
   * bucket) would only fail after an upload, a job start or a twenty-minute deploy.
   */
  baseProblem?(base: string): string | undefined;
  close(): Promise<void>;
}

/** A dry run without credentials: the store reads nothing and remembers what it could not check. */
export const isOffline = (backend: Pick<Backend, "store">) => typeof backend.store.unchecked === "function";

export async function openBackend(ctx: Context, hooks: { python: () => Promise<string> }): Promise<Backend> {
  if (ctx.config.values.backend === "vertex") {
    const { openVertexBackend } = await import("./vertex/index.ts");
    return openVertexBackend(ctx);
  }
  const { openLocalBackend } = await import("./local/index.ts");
  return openLocalBackend(ctx, hooks);
}
