// The fake's public options and handle, and the records its services share.
import type { ChildProcess } from "node:child_process";
import type { Storage } from "@google-cloud/storage";
import type { Any, FakeFailure, ParsedName, timestamp } from "./common.ts";

export interface VertexFakeOptions {
  /** fake-gcs-server endpoint (http://127.0.0.1:port). */
  gcsEndpoint: string;
  project?: string;
  projectNumber?: string;
  python?: string;
  /** Extra environment for jobs and serving containers (e.g. HF_HUB_OFFLINE=1). */
  env?: Record<string, string>;
  /** How long a CustomJob stays PENDING before it starts (default 300 ms). */
  jobStartDelayMs?: number;
  /** A prediction whose container has not answered by then gets UNAVAILABLE (default 60 000, the shared endpoint's limit). */
  predictTimeoutMs?: number;
  /**
   * The same for dedicated endpoints, overriding each endpoint's own clientConnectionConfig.inferenceTimeout
   * (default: that, else Vertex's 600 s).
   */
  dedicatedPredictTimeoutMs?: number;
  /** How long a DeployModel operation waits for "its cluster" before starting the server (default 0). */
  deployDelayMs?: number;
  /** Serving GPUs allowed per region and accelerator type (deployed + deploying); default unlimited. */
  servingGpuQuota?: number;
  /** How long a preempted trainer gets between SIGTERM and SIGKILL (default 30 000, as on Vertex). */
  preemptGraceMs?: number;
  /**
   * The serving container stand-in run by DeployModel: a Python script taking `--model-dir`, bound
   * by the AIP_* env, printing `ready url=…` (default handlers/local_server.py). For the fake's own tests.
   */
  serverScript?: string;
}

/** The shared Vertex API host, or the host that serves dedicated endpoints' DNS names. */
export type FakeHost = "shared" | "dedicated";

export interface RecordedCall {
  method: string;
  request: any;
  /** Which of the fake's servers took the call. */
  host: FakeHost;
}

/** One Predict call as the fake's front end saw it. */
export interface PredictRecord {
  /** The endpoint named in the request. */
  endpoint: string;
  host: FakeHost;
  /** The call's :authority (for a dedicated endpoint: its DNS name). */
  authority: string;
  /** The x-vertex-ai-endpoint-id header, when sent. */
  endpointIdHeader?: string;
  requestBytes: number;
  /** Bytes of the container's answer, once it answered. */
  responseBytes?: number;
  /** "ok", or the gRPC code and message the call ended with. */
  outcome: string;
}

export interface PreemptOptions {
  /** Preempt once the job's checkpoint directory holds this many new complete checkpoints (default 1). */
  afterCheckpoints?: number;
}

export interface VertexFake {
  /** host:port, the value for AVATAR_VERTEX_ENDPOINT. */
  address: string;
  port: number;
  /**
   * host:port of the server playing every dedicated endpoint's DNS name (PredictionService only),
   * the value for AVATAR_VERTEX_DEDICATED_ENDPOINT; calls must carry the DNS name as :authority.
   */
  dedicatedAddress: string;
  project: string;
  projectNumber: string;
  calls: RecordedCall[];
  /** Requests of one method (e.g. "CreateCustomJob"), in order. */
  requests(method: string): any[];
  /** Every Predict call, in order: which host, authority and header it came with, sizes, outcome. */
  predictions: PredictRecord[];
  /** The next `failure.times` (default 1) calls of `method` fail with this status (and ErrorInfo when reason is given). */
  failNext(method: string, failure: FakeFailure): void;
  /** The next LRO started by `method` ends with this error instead of its result. */
  failOperation(method: string, failure: { code: number; message: string }): void;
  /**
   * The next CustomJob created gets preempted once `afterCheckpoints` new complete checkpoints are in
   * its checkpoint directory: SIGTERM, then the job ends FAILED (or restarts in place when its
   * scheduling.restartJobOnWorkerRestart is set).
   */
  preemptNext(options?: PreemptOptions): void;
  /**
   * Predictions whose container has not answered after `ms` get UNAVAILABLE: on shared endpoints
   * (their 60 s; undefined: back to 60 s), or on dedicated ones (undefined: each endpoint's own timeout).
   */
  setPredictTimeout(ms: number | undefined, endpointType?: "shared" | "dedicated"): void;
  /** DeployModel operations started from now on wait `ms` for their cluster before starting the server. */
  setDeployDelay(ms: number): void;
  /** Serving GPUs allowed per region and accelerator type from now on; undefined = unlimited. */
  setServingGpuQuota(n: number | undefined): void;
  /** Output lines of a job's container (what Cloud Logging would hold). */
  jobLog(id: string): string[];
  /** Resolves when a job has finished (state and outputs settled). */
  jobDone(id: string): Promise<void>;
  /** Output of a deployed model's serving container (also of one that failed to start). */
  serverLog(deployedModelId: string): string[];
  /** Deployed model ids of running serving containers. */
  runningServers(): string[];
  close(): Promise<void>;
}

// ------------------------------------------------------------------------------------------------
// records

export interface JobRecord {
  id: string;
  resource: any;
  child?: ChildProcess;
  cancelRequested?: boolean;
  timedOut?: boolean;
  /** Set by preemptNext for this job; `fired` once the preemption happened. */
  preempt?: { afterCheckpoints: number; fired?: boolean };
  log: string[];
  done: Promise<void>;
}

export interface VersionRecord {
  resource: any;
  snapshot: string;
}

export interface ModelRecord {
  id: string;
  createTime: ReturnType<typeof timestamp>;
  versions: VersionRecord[];
}

export interface ServerRecord {
  child: ChildProcess;
  url: string;
  predictRoute: string;
  log: string[];
}

export interface EndpointRecord {
  id: string;
  resource: any;
  servers: Map<string, ServerRecord>;
}

export interface OperationRecord {
  name: string;
  done: boolean;
  metadataType: string;
  metadata: any;
  response?: Any;
  error?: { code: number; message: string };
  /** Aborted by CancelOperation; only operations that can stop half-way (DeployModel) listen to it. */
  abort: AbortController;
  cancellable: boolean;
}

/** A deployment in flight that holds serving GPUs (quota is charged from the DeployModel call on). */
export interface GpuReservation {
  region: string;
  gpu: string;
  count: number;
}

/** What the service modules share. */
export interface Ctx {
  options: VertexFakeOptions;
  project: string;
  projectNumber: string;
  python: string;
  /** Temp dir of this fake (job mounts, model snapshots, serving dirs). */
  work: string;
  storage: Storage;
  jobs: Map<string, JobRecord>;
  models: Map<string, ModelRecord>;
  endpoints: Map<string, EndpointRecord>;
  operations: Map<string, OperationRecord>;
  serverLogs: Map<string, string[]>;
  reservations: Set<GpuReservation>;
  settings: {
    predictTimeoutMs: number;
    dedicatedPredictTimeoutMs: number | undefined;
    deployDelayMs: number;
    servingGpuQuota: number | undefined;
    preemptGraceMs: number;
    preempt?: { afterCheckpoints: number };
  };
  predictions: PredictRecord[];
  /** Background work close() waits for. */
  track(task: Promise<unknown>): void;
  nextId(): number;
  isClosed(): boolean;
  /** projects/<number>/locations/<region> for a parsed name of this project (PERMISSION_DENIED for another). */
  loc(p: ParsedName): string;
  location(parent: string): string;
  parseGs(uri: string): { bucket: string; prefix: string };
  listObjects(bucket: string, prefix: string): Promise<string[]>;
  /** Objects → files under dir (minus `strip`); returns name → md5. */
  download(bucket: string, names: string[], dir: string, strip?: string): Promise<Map<string, string>>;
  operation(resource: string, metadataType: string, metadata: object, options?: { cancellable?: boolean }): OperationRecord;
  /** Runs `work` in the background; the op ends with its response, or its error as a Status. */
  run(method: string, op: OperationRecord, work: () => Promise<Any>): object;
  wire(op: OperationRecord): object;
  findModel(name: string): { model: ModelRecord; version: VersionRecord };
  findEndpoint(name: string): EndpointRecord;
}

/** `host`: which server took the call; `authority` its :authority; `metadata` its headers. */
export type Handler = (request: any, call: { cancelled: AbortSignal; host: FakeHost; authority: string; metadata: Record<string, string> }) => Promise<object> | object;
