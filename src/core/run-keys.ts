// Store keys of a training run (design.md, "Storage layout"): <name>/runs/<run-id>/{model,checkpoints}/,
// plus logs/trainer.log: the trainer's log lines on Vertex (in Vertex's own <run>/logs/ folder,
// AIP_TENSORBOARD_LOG_DIR), read by `avatar logs` and by the progress shown while training.
import { checkStoreKey } from "./store-keys.ts";

export const runModelKey = (name: string, runId: string) => checkStoreKey(`${name}/runs/${runId}/model`);
export const runCheckpointKey = (name: string, runId: string) => checkStoreKey(`${name}/runs/${runId}/checkpoints`);
/**
 * The model folder of a checkpoint other than the last, as register writes it when it picks one:
 * that checkpoint's weights + avatar.json (+ handler files). Not under model/ (which keeps the last
 * step's weights) and not a name that starts with "model" (a folder URI is also a prefix).
 */
/** register's likeness scores of the run's samples, by content (a cache: re-registering is instant). */
export const runScoresKey = (name: string, runId: string) => checkStoreKey(`${name}/runs/${runId}/likeness-scores.json`);
export const runStepModelKey = (name: string, runId: string, step: number) => checkStoreKey(`${name}/runs/${runId}/step-${String(step).padStart(6, "0")}`);
/** The trainer's log, relative to the run folder (the job's baseOutputDirectory). */
export const RUN_LOG = "logs/trainer.log";
export const runLogKey = (name: string, runId: string) => checkStoreKey(`${name}/runs/${runId}/${RUN_LOG}`);
export const outputsKey = (name: string, stamp: string) => checkStoreKey(`${name}/outputs/${stamp}`);

export const MODEL_FILES = { weights: "pytorch_lora_weights.safetensors", manifest: "avatar.json", handler: "handler.py", requirements: "requirements.txt" } as const;

/** avatar.json as the trainer writes it (schema 1). */
export interface AvatarManifest {
  schema: 1;
  name: string;
  run_id: string;
  base_model: string;
  /** The Hub commit the base was loaded at; null for a local directory (absent from older trainers). */
  base_revision?: string | null;
  pipeline: "sd15" | "sdxl";
  token: string;
  class_word: string;
  instance_prompt: string;
  resolution: number;
  rank: number;
  steps: number;
  dataset_sha256: string;
  trainer_version: string;
  captions: "none" | "blip";
  /** Absent from trainers before face weighting (issue 12): flip augmentation, the background loss
   * weight, how many photos trained with a face mask, the sample interval (0 = no samples). */
  flip?: boolean;
  mask_weight?: number;
  masked_images?: number;
  samples_every?: number;
  /** The checkpoint this folder's weights come from, as register chose it (absent before register). */
  checkpoint_step?: number;
  /** Its likeness score (core/checkpoint-pick.ts); null when nothing could be scored. */
  likeness?: ManifestLikeness | null;
}

export interface ManifestLikeness {
  /** The ranking score: counted samples' likeness over all samples. */
  score: number;
  mean: number | null;
  worst: number | null;
  faces: number;
  samples: number;
  near_copies: number;
  /** auto, last or step: how the checkpoint was chosen. */
  choice: string;
}

/** Why a parsed avatar.json is unusable, or undefined. */
export function manifestProblem(value: unknown): string | undefined {
  if (typeof value !== "object" || value === null) return "is not a JSON object";
  const m = value as Record<string, unknown>;
  if (m.schema !== 1) return `has schema ${String(m.schema)}, expected 1`;
  for (const key of ["name", "run_id", "base_model", "token", "class_word", "instance_prompt"]) {
    if (typeof m[key] !== "string" || m[key] === "") return `has no "${key}"`;
  }
  if (m.pipeline !== "sd15" && m.pipeline !== "sdxl") return `has an unknown pipeline "${String(m.pipeline)}"`;
  if (typeof m.resolution !== "number") return 'has no numeric "resolution"';
  if (m.base_revision !== undefined && m.base_revision !== null && (typeof m.base_revision !== "string" || !/^[0-9a-f]{40}$/.test(m.base_revision))) {
    return `has a "base_revision" that is not a commit hash: ${JSON.stringify(m.base_revision)}`;
  }
  return undefined;
}
