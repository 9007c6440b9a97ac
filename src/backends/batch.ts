// Batch generation without an endpoint (`generate --no-endpoint`): a job that runs the model over
// a JSONL file of instances in the store and writes its predictions back there. Only the vertex
// backend has one (a Vertex BatchPredictionJob); the local backend serves without cost.
import type { PlannedRequest } from "../core/vertex-specs.ts";
import type { SharedParameters } from "../core/batch-spec.ts";
import type { JobState, ModelVersion } from "./backend.ts";

export interface BatchJobSpec {
  name: string;
  /** The outputs/<stamp> folder of this generation: also the job's avatar-batch label. */
  stamp: string;
  version: ModelVersion;
  gpu: "t4" | "l4";
  spot: boolean;
  labels: Record<string, string>;
  /** Store keys: the JSONL of instances, and the folder the job writes its output folder into. */
  inputKey: string;
  outputKey: string;
  /** What every instance shares (each line carries its own copy too). */
  modelParameters: SharedParameters;
}

export interface BatchCounts {
  succeeded: number;
  failed: number;
  /** Not finished (-1: unknown, as Vertex reports it). */
  incomplete: number;
}

export interface BatchJob {
  id: string;
  name: string;
  stamp: string;
  state: JobState;
  /** The job's own state name (`pending`, `partially_succeeded`, …). */
  phase: string;
  labels: Record<string, string>;
  createdAt: string;
  endedAt?: string;
  error?: string;
  /** Store key of the folder holding the job's output files, once the job has named it. */
  outputKey?: string;
  counts: BatchCounts;
  modelVersion?: string;
  gpu?: "t4" | "l4";
  spot?: boolean;
}

export interface BatchService {
  launch(spec: BatchJobSpec): Promise<BatchJob>;
  get(id: string): Promise<BatchJob | undefined>;
  list(filter?: { name?: string }): Promise<BatchJob[]>;
  /** Resolves when the job ends, or when the signal aborts (the job keeps running). */
  wait(id: string, options?: { signal?: AbortSignal; onProgress?: (job: BatchJob) => void }): Promise<BatchJob>;
  cancel(id: string): Promise<void>;
  /** --dry-run: the request launch() would send. */
  plan(spec: BatchJobSpec): Promise<PlannedRequest[]>;
}
