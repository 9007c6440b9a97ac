// The Vertex AI requests of the vertex backend as plain objects, exactly as the official Node client
// takes them (camelCase, enums by name): CustomJob, uploadModel, createEndpoint, deployModel,
// undeployModel, predict. Pure: the backend sends them, --dry-run prints them, tests compare them.
import type { Gpu } from "./config.ts";
import { DEDICATED_INFERENCE_TIMEOUT_S, ENDPOINT_LIMITS, type EndpointType } from "./endpoint-types.ts";
import { AvatarError } from "./errors.ts";
import { MANAGED_BY } from "./names.ts";
import { gpuPresets } from "./presets.ts";
import { RUN_LOG } from "./run-keys.ts";
import { trainerArgs, type TrainerArgsInput } from "./trainer-args.ts";
import {
  avatarResourceId, endpointName, fusePath, gcsUri, locationName, modelName, runAlias, trainerPackageKey, type VertexLocation,
} from "./vertex-names.ts";

/** Hugging Face PyTorch training DLC for Vertex (torch 2.3.1, diffusers 0.32.1, peft 0.14.0): no entrypoint. */
export const TRAIN_IMAGE = "us-docker.pkg.dev/deeplearning-platform-release/gcr.io/huggingface-pytorch-training-cu121.2-3.transformers.4-48.ubuntu2204.py311";
/** Hugging Face PyTorch inference DLC (toolkit 0.5.4): imports our handler.py from the model directory. */
export const SERVE_IMAGE = "us-docker.pkg.dev/deeplearning-platform-release/gcr.io/huggingface-pytorch-inference-cu121.2-3.transformers.4-48.ubuntu2204.py311";

type Env = Readonly<Record<string, string | undefined>>;
export const trainImage = (env: Env) => env.AVATAR_TRAIN_IMAGE || TRAIN_IMAGE;
export const serveImage = (env: Env) => env.AVATAR_SERVE_IMAGE || SERVE_IMAGE;

/** Env names the serving image treats as model sources: with artifactUri set, the 4.48 image exits. */
export const FORBIDDEN_MODEL_ENV = ["HF_MODEL_ID", "HF_MODEL_DIR"] as const;

/** A request the vertex backend sends (or, with --dry-run, would send). */
export interface PlannedRequest {
  /** e.g. "JobService", "ModelService", "Cloud Storage". */
  service: string;
  /** e.g. "CreateCustomJob". */
  method: string;
  request: unknown;
  /** Why, or when it is skipped. */
  note?: string;
}

/** Human lines for planned requests: the method, then the request as indented JSON. */
export function formatPlannedRequests(requests: readonly PlannedRequest[] | undefined): string[] {
  if (!requests?.length) return [];
  const lines = ["", `Requests (${requests.length}, not sent: --dry-run):`];
  for (const r of requests) {
    lines.push(`${r.service}.${r.method}${r.note ? `  # ${r.note}` : ""}`);
    lines.push(...JSON.stringify(r.request, null, 2).split("\n").map((l) => `  ${l}`));
  }
  return lines;
}

// ---------------------------------------------------------------------------------------------
// Training

export type TrainerOptions = Omit<TrainerArgsInput, "dataset" | "outputDir" | "checkpointDir" | "logFile">;

export interface CustomJobInput {
  bucket: string;
  displayName: string;
  labels: Record<string, string>;
  gpu: Gpu;
  spot: boolean;
  timeoutSeconds: number;
  imageUri: string;
  /** Trainer package version: its files are under <root>/_trainer/<version>/avatar_trainer/. */
  trainerVersion: string;
  trainer: TrainerOptions;
  datasetKey: string;
  /** <name>/runs/<run>/model and …/checkpoints: the job's baseOutputDirectory is their parent. */
  modelKey: string;
  checkpointKey: string;
}

const LABEL_PATTERN = /^[\p{Ll}\p{Lo}][\p{Ll}\p{Lo}\p{N}_-]{0,62}$/u;
const LABEL_VALUE_PATTERN = /^[\p{Ll}\p{Lo}\p{N}_-]{0,63}$/u;

/** Why a label set would be rejected by Vertex, or undefined. */
export function labelsProblem(labels: Record<string, string>): string | undefined {
  const entries = Object.entries(labels);
  if (entries.length > 64) return "has more than 64 labels";
  for (const [key, value] of entries) {
    if (!LABEL_PATTERN.test(key)) return `label key "${key}" must start with a lowercase letter and use lowercase letters, digits, _ or -, up to 63 characters`;
    if (!LABEL_VALUE_PATTERN.test(value)) return `label value "${value}" of "${key}" must use lowercase letters, digits, _ or -, up to 63 characters`;
  }
  return undefined;
}

function checkLabels(labels: Record<string, string>): Record<string, string> {
  const problem = labelsProblem(labels);
  if (problem) throw new AvatarError("INTERNAL", `Resource labels: ${problem}.`);
  return labels;
}

/** The run directory (`<name>/runs/<run>`) of a model key, checked against the checkpoint key. */
export function runKeyOf(modelKey: string, checkpointKey: string): string {
  const run = modelKey.replace(/\/model$/, "");
  if (run === modelKey || checkpointKey !== `${run}/checkpoints`) {
    throw new AvatarError("INTERNAL", `Model key ${modelKey} and checkpoint key ${checkpointKey} are not <run>/model and <run>/checkpoints.`);
  }
  return run;
}

/**
 * Why a base model cannot work on real Vertex, or undefined. The training job and the serving
 * container both load the base with from_pretrained, which on Vertex means the Hugging Face Hub:
 * the serving container has no /gcs mount, and a directory on this machine is invisible to both.
 * With a local emulator, jobs and servers run on this machine, so local directories work there.
 */
export function vertexBaseProblem(base: string, emulated: boolean): string | undefined {
  if (emulated) return undefined;
  if (/^[A-Za-z0-9][\w.-]*\/[\w.-]+$/.test(base) && !base.includes("..")) return undefined;
  const where = base.startsWith("/gcs/") || base.startsWith("gs://") ? "a bucket path" : "a directory on this machine";
  return `${base} is ${where}, not a Hugging Face Hub id: the Vertex training job and serving container load the base from the Hub`;
}

/** What to do about a base that Vertex cannot load. */
export const VERTEX_BASE_HINT = "Use sdxl, sd15 or a Hub id (org/name); a model of your own can be pushed to the Hub (a private repo works with an HF token).";

/** The shell line that runs the trainer package from its FUSE directory; exec keeps SIGTERM for python. */
export function trainerCommand(bucket: string, trainerVersion: string): string[] {
  const dir = fusePath(bucket, trainerPackageKey(trainerVersion));
  return ["sh", "-c", `cd '${dir}' && exec python -m avatar_trainer "$@"`, "avatar-trainer"];
}

/** google.cloud.aiplatform.v1.CustomJob for one training run. */
export function customJobSpec(input: CustomJobInput) {
  const preset = gpuPresets[input.gpu];
  const runKey = runKeyOf(input.modelKey, input.checkpointKey);
  const args = trainerArgs({
    ...input.trainer,
    dataset: fusePath(input.bucket, input.datasetKey),
    outputDir: fusePath(input.bucket, input.modelKey),
    checkpointDir: fusePath(input.bucket, input.checkpointKey),
    logFile: fusePath(input.bucket, `${runKey}/${RUN_LOG}`),
  });
  return {
    displayName: input.displayName,
    labels: checkLabels({ ...input.labels }),
    jobSpec: {
      workerPoolSpecs: [
        {
          machineSpec: { machineType: preset.machineType, acceleratorType: preset.acceleratorType, acceleratorCount: preset.acceleratorCount },
          replicaCount: 1,
          containerSpec: {
            imageUri: input.imageUri,
            command: trainerCommand(input.bucket, input.trainerVersion),
            args,
            env: [
              { name: "PYTHONUNBUFFERED", value: "1" },
              // The package runs from the bucket: no __pycache__ objects written back into it.
              { name: "PYTHONDONTWRITEBYTECODE", value: "1" },
            ],
          },
        },
      ],
      // No restartJobOnWorkerRestart: it restarts the whole job when one worker restarts, which
      // matters to multi-worker jobs only. Vertex itself restarts a one-worker job's container after
      // a non-zero exit or VM maintenance (docs: "Understand the Vertex AI serverless training
      // service"); the trainer then resumes from its checkpoints in the bucket. A preempted Spot
      // job that ends FAILED is resumed by the next `avatar train` (workflows/train.ts).
      scheduling: { timeout: { seconds: input.timeoutSeconds }, ...(input.spot ? { strategy: "SPOT" as const } : {}) },
      // AIP_MODEL_DIR = <run>/model/, AIP_CHECKPOINT_DIR = <run>/checkpoints/ in the container.
      baseOutputDirectory: { outputUriPrefix: gcsUri(input.bucket, runKey) },
    },
  };
}

export function createCustomJobRequest(loc: VertexLocation, input: CustomJobInput) {
  return { parent: locationName(loc), customJob: customJobSpec(input) };
}

// ---------------------------------------------------------------------------------------------
// Registry

export interface UploadModelInput {
  name: string;
  runId: string;
  artifactUri: string;
  labels: Record<string, string>;
  description?: string;
  imageUri: string;
  /** The avatar already has a registry model: the upload adds a version to it. */
  modelExists: boolean;
}

export function uploadModelRequest(loc: VertexLocation, input: UploadModelInput) {
  const model = {
    displayName: avatarResourceId(input.name),
    ...(input.description ? { description: input.description } : {}),
    versionDescription: `training run ${input.runId}`,
    // "default" moves to the new version (what `avatar deploy` serves); the run alias finds it again.
    versionAliases: ["default", runAlias(input.runId)],
    labels: checkLabels({ ...input.labels }),
    artifactUri: input.artifactUri,
    containerSpec: {
      imageUri: input.imageUri,
      // No HF_MODEL_ID / HF_MODEL_DIR: the image takes the model from AIP_STORAGE_URI (the artifacts),
      // and handler.py reads the base model id from avatar.json.
      // No AVATAR_GPU either: the env is fixed here, at register, and the GPU is chosen later, at
      // deploy (one model version may be deployed on a T4 or an L4). handler.py sizes its limits
      // from the card torch detects (T4 ~15 GiB, L4 ~22 GiB) instead.
      // The endpoint type is chosen at deploy too: the handler gets the limits of a dedicated
      // endpoint (the default: 10 MB, our inference timeout). On a shared endpoint (1.5 MB, 60 s)
      // the vertex backend refuses responses that would not fit before sending, and maps Vertex's
      // own size and time refusals (backends/vertex/serving.ts).
      env: [
        { name: "HF_HUB_DISABLE_TELEMETRY", value: "1" },
        { name: "AVATAR_MAX_RESPONSE_BYTES", value: String(ENDPOINT_LIMITS.dedicated.payloadBytes) },
        { name: "AVATAR_PREDICT_TIMEOUT_S", value: String(DEDICATED_INFERENCE_TIMEOUT_S) },
      ],
      ports: [{ containerPort: 8080 }],
      // Loading SDXL and installing requirements.txt takes minutes before the port opens.
      deploymentTimeout: { seconds: 3600 },
    },
  };
  return input.modelExists
    ? { parent: locationName(loc), parentModel: modelName(loc, input.name), model }
    : { parent: locationName(loc), modelId: avatarResourceId(input.name), model };
}

// ---------------------------------------------------------------------------------------------
// Serving

/**
 * A dedicated endpoint predicts at its own DNS name (10 MB, the inference timeout set here); a
 * shared one at `{region}-aiplatform.googleapis.com` (1.5 MB, 60 s). See core/endpoint-types.ts.
 */
export function createEndpointRequest(loc: VertexLocation, name: string, type: EndpointType, extraLabels: Record<string, string> = {}) {
  const endpoint = { displayName: avatarResourceId(name), labels: { ...extraLabels, avatar: name, "managed-by": MANAGED_BY } };
  return {
    parent: locationName(loc),
    endpointId: avatarResourceId(name),
    endpoint:
      type === "dedicated"
        ? { ...endpoint, dedicatedEndpointEnabled: true, clientConnectionConfig: { inferenceTimeout: { seconds: DEDICATED_INFERENCE_TIMEOUT_S } } }
        : endpoint,
  };
}

export interface DeployModelInput {
  name: string;
  versionId: string;
  runId: string;
  gpu: Gpu;
  minReplicas: number;
  maxReplicas: number;
  /** DeployedModel.serviceAccount: the serving container's identity (studios read the bucket). */
  serviceAccount?: string;
}

/** The deployed model's display name carries the run id, so endpoint info can show it without a lookup. */
export const deployedModelDisplayName = (name: string, runId: string) => `avatar-${name}-${runId}`;

export function runIdOfDeployedModel(displayName: string | null | undefined): string | undefined {
  return /-(\d{8}-\d{6})$/.exec(displayName ?? "")?.[1];
}

export function deployModelRequest(loc: VertexLocation, input: DeployModelInput) {
  if (!Number.isInteger(input.minReplicas) || input.minReplicas < 1 || input.maxReplicas < input.minReplicas) {
    throw new AvatarError("BAD_INPUT", `Replicas ${input.minReplicas}-${input.maxReplicas} are not valid.`, { hint: "Vertex (v1) needs at least 1 replica, and max ≥ min." });
  }
  const preset = gpuPresets[input.gpu];
  return {
    endpoint: endpointName(loc, input.name),
    deployedModel: {
      model: `${modelName(loc, input.name)}@${input.versionId}`,
      displayName: deployedModelDisplayName(input.name, input.runId),
      dedicatedResources: {
        machineSpec: { machineType: preset.machineType, acceleratorType: preset.acceleratorType, acceleratorCount: preset.acceleratorCount },
        minReplicaCount: input.minReplicas,
        maxReplicaCount: input.maxReplicas,
      },
      // The identity of the serving container (a studio reads LoRAs from the bucket; the default
      // identity may read only the model's own artifacts).
      ...(input.serviceAccount ? { serviceAccount: input.serviceAccount } : {}),
    },
    // "0" is the model being deployed: it takes all traffic.
    trafficSplit: { "0": 100 },
  };
}

export interface DeployedModelRef {
  id: string;
  traffic: number;
}

/**
 * undeployModel requests that empty an endpoint: models without traffic first, and while others
 * remain, a traffic split that moves the traffic off the model being removed (Vertex refuses to
 * undeploy a model that still has traffic unless it is the last one).
 */
export function undeployAllRequests(endpoint: string, deployed: readonly DeployedModelRef[]) {
  const order = [...deployed].sort((a, b) => a.traffic - b.traffic || a.id.localeCompare(b.id));
  return order.map((model, i) => {
    const rest = order.slice(i + 1);
    if (model.traffic === 0 || rest.length === 0) return { endpoint, deployedModelId: model.id };
    const split = Object.fromEntries(rest.map((m, j) => [m.id, j === 0 ? 100 : 0]));
    return { endpoint, deployedModelId: model.id, trafficSplit: split };
  });
}

/** predict: the container's JSON body split into instances and parameters (Values built by the client side). */
export function predictRequest(endpoint: string, body: unknown): { endpoint: string; instances: unknown[]; parameters?: unknown } {
  const b = body as { instances?: unknown; parameters?: unknown } | null;
  if (!b || typeof b !== "object" || !Array.isArray(b.instances) || b.instances.length === 0) {
    throw new AvatarError("BAD_INPUT", "A prediction needs a non-empty instances list.");
  }
  return { endpoint, instances: b.instances, ...(b.parameters === undefined ? {} : { parameters: b.parameters }) };
}
