// `generate --no-endpoint`: the Vertex BatchPredictionJob that generates a set of images with no
// endpoint, its JSONL input lines, and the reading of its output lines. Pure.
//
// What Vertex does with it (sources; UNCONFIRMED = not checked against a real job):
// - Input: JSONL in Cloud Storage (`inputConfig {instancesFormat: "jsonl", gcsSource {uris}}`);
//   each line is one instance, and Vertex POSTs `{"instances": [line, line, …]}`, batchSize lines
//   at a time, to the model's predict route, the same route and container as online serving
//   (Vertex docs "Get batch predictions from a custom trained model", JSON Lines examples).
// - `manualBatchTuningParameters.batchSize`: default 64 ("too high value will result in a whole
//   batch not fitting in a machine's memory, and the whole operation will fail";
//   manual_batch_tuning_parameters.proto).
// - `modelParameters` reaching the container as `parameters`: UNCONFIRMED. The proto only says
//   "The parameters that govern the predictions"; python-aiplatform #2666 shows a custom container
//   that needed `parameters` getting a body without them (FastAPI's 422 `"loc":["body",
//   "parameters"]` in the job's error output). So every line carries its own parameters (handler.py
//   merges an instance's `parameters` over the request's) and modelParameters repeats the shared
//   ones, for a container that does get them.
// - `dedicatedResources` (BatchDedicatedResources): machineSpec, startingReplicaCount (Vertex
//   picks when unset), maxReplicaCount (default 10). `spot` exists only in v1beta1
//   (v1beta1/machine_resources.proto BatchDedicatedResources.spot); "Use Spot VMs with inference":
//   a preempted prediction job fails with STOCKOUT and is restarted up to six times, and only
//   running time is billed.
// - Output: a folder `prediction-<model-display-name>-<job-create-time>` under
//   `outputConfig.gcsDestination.outputUriPrefix` (proto; OutputInfo.gcsOutputDirectory names it).
//   The proto promises `predictions_0001.jsonl` / `errors_0001.jsonl`; public code reading real
//   jobs finds `prediction.results-00000-of-00001` and `prediction.errors_stats-00000-of-00001`
//   (e.g. rafaelsf80/vertex-bert-translation-turkish README; a created-time folder spelled
//   `prediction-usgs_earthquakes-2025_03_25T06_28_43_123Z`). Every object in the folder is read.
// - Output lines: PredictionResult, `{"instance": …, "prediction": …}` or `{"instance": …,
//   "error": {"status": "<code name>", "message": …}}` (REST reference "PredictionResult"); the
//   proto's errors files carry `error` as google.rpc.Status `{code, message}`: both are read.
//   Which file holds failed instances, and what an errors_stats line holds (the text of #2666
//   reads like a Python tuple `('<message>', n)`), is UNCONFIRMED: such lines are read as job-level
//   errors, and an image with no line at all is reported failed with them.
import type { Gpu } from "./config.ts";
import { AvatarError } from "./errors.ts";
import { gpuPresets } from "./presets.ts";
import { locationName, modelName, type VertexLocation } from "./vertex-names.ts";
import { labelsProblem } from "./vertex-specs.ts";

/**
 * One line per request. handler.py refuses, per request, what would not fit the GPU's memory, the
 * time limit and the response limit of the model's environment (60 s and 1.5 MB unless the model
 * says otherwise): one image per request fits every GPU preset, as online generation does, and the
 * per-request overhead is small next to seconds per image.
 */
export const BATCH_SIZE = 1;

/** One image of a batch: its place in the set (file names), the prompt as given and as sent, its seed. */
export interface PlannedImage {
  index: number;
  raw: string;
  prompt: string;
  seed: number;
}

/** What every image shares: the generate options as the handler names them (num_images is 1). */
export type SharedParameters = Record<string, string | number>;

/** A JSONL line: one instance with all of its parameters (see the header on modelParameters). */
export function batchInstance(image: PlannedImage, shared: SharedParameters, negativePrompt?: string): Record<string, unknown> {
  return {
    prompt: image.prompt,
    ...(negativePrompt ? { negative_prompt: negativePrompt } : {}),
    parameters: { ...shared, num_images: 1, seed: image.seed },
  };
}

export const instancesJsonl = (instances: readonly unknown[]) => instances.map((i) => `${JSON.stringify(i)}\n`).join("");

export interface BatchJobInput {
  name: string;
  stamp: string;
  versionId: string;
  gpu: Gpu;
  spot: boolean;
  labels: Record<string, string>;
  /** gs:// URI of input.jsonl. */
  inputUri: string;
  /** gs:// folder the job writes its prediction-… folder into. */
  outputUriPrefix: string;
  modelParameters: SharedParameters;
}

export const batchDisplayName = (name: string, stamp: string) => `avatar-${name}-batch-${stamp}`;

/** CreateBatchPredictionJob (v1; with spot, v1beta1, the only version that has the field). */
export function batchPredictionJobRequest(loc: VertexLocation, input: BatchJobInput) {
  if (!input.inputUri.startsWith("gs://") || !input.outputUriPrefix.startsWith("gs://")) {
    throw new AvatarError("INTERNAL", `A batch job reads and writes Cloud Storage: ${input.inputUri}, ${input.outputUriPrefix}.`);
  }
  const problem = labelsProblem(input.labels);
  if (problem) throw new AvatarError("INTERNAL", `Batch job labels: ${problem}.`);
  const preset = gpuPresets[input.gpu];
  return {
    parent: locationName(loc),
    batchPredictionJob: {
      displayName: batchDisplayName(input.name, input.stamp),
      model: `${modelName(loc, input.name)}@${input.versionId}`,
      inputConfig: { instancesFormat: "jsonl", gcsSource: { uris: [input.inputUri] } },
      modelParameters: input.modelParameters,
      outputConfig: { predictionsFormat: "jsonl", gcsDestination: { outputUriPrefix: input.outputUriPrefix } },
      dedicatedResources: {
        machineSpec: { machineType: preset.machineType, acceleratorType: preset.acceleratorType, acceleratorCount: preset.acceleratorCount },
        // One node: a known price and one GPU of quota (the default maximum is 10).
        startingReplicaCount: 1,
        maxReplicaCount: 1,
        ...(input.spot ? { spot: true } : {}),
      },
      manualBatchTuningParameters: { batchSize: BATCH_SIZE },
      labels: { ...input.labels },
    },
  };
}

export type OutputLine =
  | { kind: "prediction"; instance: unknown; prediction: Record<string, unknown> }
  | { kind: "error"; instance: unknown; message: string }
  | { kind: "stats"; message: string; count: number };

function errorText(error: unknown): string {
  if (typeof error === "string") return error;
  const e = (error ?? {}) as { status?: unknown; code?: unknown; message?: unknown };
  const code = typeof e.status === "string" ? e.status : typeof e.code === "number" || typeof e.code === "string" ? `code ${e.code}` : "";
  const message = typeof e.message === "string" ? e.message : JSON.stringify(error);
  return code ? `${message} (${code})` : message;
}

/** A Python string literal's body ('…' or "…") as text. */
const unquote = (body: string) => body.replace(/\\(['"\\])/g, "$1").replace(/\\n/g, "\n");

/** One line of a batch job's output, or undefined for a line that is none of the known shapes. */
export function parseOutputLine(line: string): OutputLine | undefined {
  const text = line.trim();
  if (!text) return undefined;
  const tuple = /^\(\s*(['"])([\s\S]*)\1\s*,\s*(\d+)\s*\)$/.exec(text);
  if (tuple) return { kind: "stats", message: unquote(tuple[2]!), count: Number(tuple[3]) };
  let value: unknown;
  try {
    value = JSON.parse(text);
  } catch {
    return undefined;
  }
  if (typeof value !== "object" || value === null) return undefined;
  const v = value as { instance?: unknown; prediction?: unknown; error?: unknown; errorMessage?: unknown; count?: unknown };
  if (v.prediction && typeof v.prediction === "object") return { kind: "prediction", instance: v.instance, prediction: v.prediction as Record<string, unknown> };
  if (v.error !== undefined) return { kind: "error", instance: v.instance, message: errorText(v.error) };
  if (typeof v.errorMessage === "string") return { kind: "stats", message: v.errorMessage, count: Number(v.count) || 0 };
  return undefined;
}

/** The seed a line's instance asked for (its own parameters; numbers may come back as doubles). */
export function instanceSeed(instance: unknown): number | undefined {
  const seed = Number((instance as { parameters?: { seed?: unknown } } | null)?.parameters?.seed);
  return Number.isSafeInteger(seed) ? seed : undefined;
}
