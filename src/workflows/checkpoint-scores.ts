// Scores a run's checkpoints by the likeness of their samples (issue #12 §4). The trainer leaves, under
// runs/<run>/checkpoints/, complete checkpoint-NNNNNN/ folders (marker COMPLETE) with the LoRA weights
// and, when sampled, samples/sample-*.png + samples/samples.json. Each sample's largest face is
// compared with the faces of the run's training photos (its dataset zip); core/checkpoint-pick.ts
// turns the numbers into rows and a choice.
import { createHash } from "node:crypto";
import { buffer, text } from "node:stream/consumers";
import type { Backend } from "../backends/backend.ts";
import type { Context } from "../context.ts";
import { NEAR_COPY_HASH_BITS, NEAR_COPY_SIMILARITY, summariseCheckpoint, type CheckpointRow, type SampleScore } from "../core/checkpoint-pick.ts";
import { MODEL_FILES, runCheckpointKey } from "../core/run-keys.ts";
import type { FaceModel } from "./faces/index.ts";
import { avatarDatasetKey, datasetsUri, DETECT_MAX_SIDE, faceModel, referencesFromStore, scoreImage, type References } from "./likeness.ts";

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
 * What a cached score depends on besides the sample's bytes and the dataset: the face model and
 * detector, the decode size and the near-copy thresholds. Change it when any of them changes.
 */
const SCORER = `face-api-tiny416/max${DETECT_MAX_SIDE}/copy${NEAR_COPY_SIMILARITY}-${NEAR_COPY_HASH_BITS}/v2`;

type CachedSample = Pick<SampleScore, "face" | "likeness" | "nearCopy">;

/** runs/<run>/likeness-scores.json: scores by sample content, so re-registering a run is instant. */
interface ScoreCache {
  schema: 1;
  scorer: string;
  dataset: string | null;
  references: CheckpointScores["references"] | null;
  samples: Record<string, CachedSample>;
}

async function readCache(backend: Backend, key: string | undefined, dataset: string | undefined): Promise<ScoreCache | undefined> {
  if (!key || !(await backend.store.exists(key))) return undefined;
  try {
    const cache = JSON.parse(await text(await backend.store.read(key))) as ScoreCache;
    return cache.schema === 1 && cache.scorer === SCORER && cache.dataset === (dataset ?? null) && typeof cache.samples === "object" ? cache : undefined;
  } catch {
    return undefined; // unreadable: score again and rewrite it
  }
}

/**
 * Scores every sampled checkpoint. `datasetSha256`: the run's dataset (avatar.json), whose photos
 * are the references; without it (or when it is gone) the avatar's newest dataset. `cacheKey`: a
 * store key for the scores (by sample content): a sample scored before is not scored again, and
 * the face model is loaded only when something is new.
 */
export async function scoreCheckpoints(ctx: Context, backend: Backend, name: string, checkpoints: readonly RunCheckpoint[], datasetSha256?: string, cacheKey?: string): Promise<CheckpointScores> {
  const sampled = checkpoints.filter((c) => c.samples && c.samples.length > 0);
  if (sampled.length === 0) return { rows: [], samples: {} };
  const total = sampled.reduce((n, c) => n + c.samples!.length, 0);
  const datasetKey = (datasetSha256 ? await avatarDatasetKey(backend, name, datasetSha256) : undefined) ?? (await avatarDatasetKey(backend, name));
  const cache = await readCache(backend, cacheKey, datasetKey);
  const fresh: Record<string, CachedSample> = {};
  const progress = ctx.out.progress(`Scoring ${sampled.length} checkpoint${sampled.length === 1 ? "" : "s"} (${total} samples)`, total, "steps");
  let scorer: Promise<{ model: FaceModel; references?: References }> | undefined;
  const load = () =>
    (scorer ??= faceModel().then(async (model) => ({ model, ...(datasetKey ? { references: await referencesFromStore(model, backend, datasetKey) } : {}) })));
  const samples: Record<number, SampleScore[]> = {};
  let done = 0;
  for (const checkpoint of sampled) {
    const scores: SampleScore[] = [];
    for (const sample of checkpoint.samples!) {
      const key = `${checkpoint.key}/samples/${sample.file}`;
      const image = await buffer(await backend.store.read(key));
      const sha = createHash("sha256").update(image).digest("hex");
      let scored: CachedSample | undefined = cache?.samples[sha] ?? fresh[sha];
      if (!scored) {
        const { model, references } = await load();
        const result = await scoreImage(model, references?.faces ?? [], image, backend.store.uri(key));
        scored = { face: result.face, likeness: result.likeness, ...(result.nearCopy ? { nearCopy: result.nearCopy } : {}) };
        fresh[sha] = scored;
      }
      scores.push({ file: sample.file, ...(sample.kind ? { kind: sample.kind } : {}), ...scored });
      progress.update(++done);
    }
    samples[checkpoint.step] = scores;
  }
  progress.done();
  const loaded = scorer ? await scorer : undefined;
  const refs = loaded?.references ? { source: loaded.references.source, photos: loaded.references.photos, faces: loaded.references.faces.length } : (cache?.references ?? undefined);
  if (cacheKey && Object.keys(fresh).length && !ctx.flags?.dryRun) {
    const next: ScoreCache = { schema: 1, scorer: SCORER, dataset: datasetKey ?? null, references: refs ?? null, samples: { ...cache?.samples, ...fresh } };
    await backend.store.put(cacheKey, Buffer.from(`${JSON.stringify(next)}\n`), { contentType: "application/json", overwrite: true }).catch(() => undefined); // only a cache
  }
  const unscored = !datasetKey
    ? `${name} has no dataset in ${datasetsUri(backend.store, name)}: faces were found but not compared`
    : refs && refs.faces === 0
      ? `no face was found in the ${refs.photos} training photos: faces were found but not compared`
      : undefined;
  return { rows: sampled.map((c) => summariseCheckpoint(c.step, samples[c.step]!)), samples, ...(refs ? { references: refs } : {}), ...(unscored ? { unscored } : {}) };
}
