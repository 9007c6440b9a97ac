// Scores a run's checkpoints by the likeness of their samples (issue #12 §4). The trainer leaves, under
// runs/<run>/checkpoints/, complete checkpoint-NNNNNN/ folders (marker COMPLETE) with the LoRA weights
// and, when sampled, samples/sample-*.png + samples/samples.json. Each sample's largest face is
// compared with the faces of the run's training photos (its dataset zip); core/checkpoint-pick.ts
// turns the numbers into rows and a choice.
import { buffer, text } from "node:stream/consumers";
import type { Backend } from "../backends/backend.ts";
import type { Context } from "../context.ts";
import { summariseCheckpoint, type CheckpointRow, type SampleScore } from "../core/checkpoint-pick.ts";
import { MODEL_FILES, runCheckpointKey } from "../core/run-keys.ts";
import { avatarDatasetKey, faceModel, referencesFromStore, scoreImage, type References } from "./likeness.ts";

export interface RunCheckpoint {
  step: number;
  /** Store key of the checkpoint folder. */
  key: string;
  weights: boolean;
  /** Sample files listed in samples/samples.json (absent: not sampled). */
  samples?: { file: string; kind?: string }[];
}

export interface CheckpointScores {
  rows: CheckpointRow[];
  /** Per checkpoint step, its samples' scores (for --json). */
  samples: Record<number, SampleScore[]>;
  references?: { source: string; photos: number; faces: number };
  /** Why nothing could be scored (no dataset, no training face), when so. */
  unscored?: string;
}

const STEP = /\/checkpoint-(\d{6,})\/(.+)$/;

/** The run's complete checkpoints, oldest first, with what each holds. */
export async function listCheckpoints(backend: Backend, name: string, runId: string): Promise<RunCheckpoint[]> {
  const root = runCheckpointKey(name, runId);
  const byStep = new Map<number, { files: Set<string> }>();
  for (const object of await backend.store.list(`${root}/`)) {
    const m = STEP.exec(object.key.slice(root.length));
    if (!m) continue;
    const step = Number(m[1]);
    if (!byStep.has(step)) byStep.set(step, { files: new Set() });
    byStep.get(step)!.files.add(m[2]!);
  }
  const out: RunCheckpoint[] = [];
  for (const [step, { files }] of [...byStep].sort((a, b) => a[0] - b[0])) {
    if (!files.has("COMPLETE")) continue;
    const key = `${root}/checkpoint-${String(step).padStart(6, "0")}`;
    const checkpoint: RunCheckpoint = { step, key, weights: files.has(MODEL_FILES.weights) };
    if (files.has("samples/samples.json")) {
      try {
        const parsed = JSON.parse(await text(await backend.store.read(`${key}/samples/samples.json`))) as { samples?: { file?: unknown; kind?: unknown }[] };
        checkpoint.samples = (parsed.samples ?? [])
          .filter((s) => typeof s.file === "string" && /^[A-Za-z0-9._-]+$/.test(s.file) && files.has(`samples/${s.file}`))
          .map((s) => ({ file: s.file as string, ...(typeof s.kind === "string" ? { kind: s.kind } : {}) }));
      } catch {
        checkpoint.samples = []; // unreadable samples.json: sampled, but nothing to score
      }
    }
    out.push(checkpoint);
  }
  return out;
}

/**
 * Scores every sampled checkpoint. `datasetSha256`: the run's dataset (avatar.json), whose photos
 * are the references; without it (or when it is gone) the avatar's newest dataset.
 */
export async function scoreCheckpoints(ctx: Context, backend: Backend, name: string, checkpoints: readonly RunCheckpoint[], datasetSha256?: string): Promise<CheckpointScores> {
  const sampled = checkpoints.filter((c) => c.samples && c.samples.length > 0);
  if (sampled.length === 0) return { rows: [], samples: {} };
  const total = sampled.reduce((n, c) => n + c.samples!.length, 0);
  const datasetKey = (datasetSha256 ? await avatarDatasetKey(backend, name, datasetSha256) : undefined) ?? (await avatarDatasetKey(backend, name));
  const progress = ctx.out.progress(`Scoring ${sampled.length} checkpoint${sampled.length === 1 ? "" : "s"} (${total} samples)`, total, "steps");
  const model = await faceModel();
  let references: References | undefined;
  if (datasetKey) references = await referencesFromStore(model, backend, datasetKey);
  const samples: Record<number, SampleScore[]> = {};
  let done = 0;
  for (const checkpoint of sampled) {
    const scores: SampleScore[] = [];
    for (const sample of checkpoint.samples!) {
      const key = `${checkpoint.key}/samples/${sample.file}`;
      const image = await buffer(await backend.store.read(key));
      const scored = await scoreImage(model, references?.faces ?? [], image, backend.store.uri(key));
      scores.push({ file: sample.file, ...(sample.kind ? { kind: sample.kind } : {}), face: scored.face, likeness: scored.likeness, ...(scored.nearCopy ? { nearCopy: scored.nearCopy } : {}) });
      progress.update(++done);
    }
    samples[checkpoint.step] = scores;
  }
  progress.done();
  const refs = references ? { source: references.source, photos: references.photos, faces: references.faces.length } : undefined;
  const unscored = !datasetKey
    ? `${name} has no dataset in ${backend.store.uri(`${name}/datasets/`)}: faces were found but not compared`
    : references!.faces.length === 0
      ? `no face was found in the ${references!.photos} training photos: faces were found but not compared`
      : undefined;
  return { rows: sampled.map((c) => summariseCheckpoint(c.step, samples[c.step]!)), samples, ...(refs ? { references: refs } : {}), ...(unscored ? { unscored } : {}) };
}
