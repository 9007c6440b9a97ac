// Which checkpoint of a run becomes the registered model (issue #12 §4). Pure: the numbers come from
// workflows/checkpoint-scores.ts (face detection and embeddings of each checkpoint's samples).
//
// The ranking rule (README, "Which checkpoint is registered"):
//  - a sample's likeness is the mean cosine similarity of its face's identity embedding to the
//    training faces (core/faces.ts). Measured on the face library's package photos: another
//    person's face scores 0.86-0.93 against a set of one person's photos, a new view (rotated,
//    mirrored, re-lit) of one of those photos 0.97-0.99: the scale is compressed near 1;
//  - a sample counts when a face was found in it and it is not a near-copy of a training photo; it
//    then scores (likeness - SCORE_FLOOR) / (1 - SCORE_FLOOR), clamped to 0..1: someone else's face
//    scores about 0, so a face alone earns nothing;
//  - a checkpoint's score is the sum of its counted samples' scores divided by *all* its samples:
//    a sample without a face or a near-copy scores 0, so a checkpoint that loses faces or copies a
//    training photo loses score instead of being rewarded for it;
//  - the highest score wins; scores within TIE_MARGIN of the best are a tie, and a tie goes to the
//    checkpoint with fewer near-copies, then to the later step (the user asked for that many steps);
//  - when no sample of any checkpoint has a face (the tiny demo model draws noise) the last
//    checkpoint is kept, and the result says so.

/** The likeness that scores 0: the low end of other people's faces on this embedding's scale. */
export const SCORE_FLOOR = 0.85;

/** Scores closer than this to the best count as a tie (sampling noise of 4 images is larger). */
export const TIE_MARGIN = 0.02;

/**
 * A near-copy: the sample's face is this similar (cosine of identity embeddings) to one training
 * photo's face *and* the face regions' perceptual hashes are within NEAR_COPY_HASH_BITS of 64 bits.
 * Either alone is not enough: a good likeness is close in embedding but differs in pose, light and
 * background; two different faces in the same framing can share a coarse hash. Measured: a
 * re-encoded or re-lit copy is 0-3 bits away, a 6° rotation of it 2-15 (depending on the detector's
 * box), a 12° one 10-16, mirrored 18-26, another photo 20-40.
 */
export const NEAR_COPY_SIMILARITY = 0.95;
export const NEAR_COPY_HASH_BITS = 8;

export type CheckpointChoice = { kind: "auto" } | { kind: "last" } | { kind: "step"; step: number };

/** One sample image of a checkpoint, scored. */
export interface SampleScore {
  file: string;
  /** close-up, three-quarter, style, setting (samples.json), when known. */
  kind?: string;
  face: boolean;
  /** Identity similarity of the sample's face to the training faces; null without a face. */
  likeness: number | null;
  /** The training photo this sample nearly copies (overfitting, not likeness). */
  nearCopy?: { photo: string; similarity: number; hashDistance: number };
}

export interface CheckpointRow {
  step: number;
  samples: number;
  /** Samples in which a face was found. */
  faces: number;
  /** Mean likeness (cosine) of the counted samples (face found, not a near-copy); null when none counts. */
  likeness: number | null;
  /** The lowest likeness among the counted samples; null when none counts. */
  worst: number | null;
  nearCopies: number;
  /** The ranking score, 0..1: counted samples' scores summed over all samples (see the rule above). */
  score: number;
}

export interface Pick {
  step: number;
  /** The last step of the run (the trainer's final weights). */
  lastStep: number;
  choice: CheckpointChoice["kind"];
  /** The chosen checkpoint's row, when it was sampled. */
  row?: CheckpointRow;
  /** One sentence: why this step. */
  reason: string;
  /** True when no sample of any checkpoint showed a face. */
  noFaces: boolean;
}

const round3 = (n: number) => Math.round(n * 1000) / 1000;

/** `auto`, `last` or a step number; undefined for anything else. */
export function parseCheckpointChoice(value: string): CheckpointChoice | undefined {
  const v = value.trim().toLowerCase();
  if (v === "auto" || v === "last") return { kind: v };
  if (/^\d{1,9}$/.test(v) && Number(v) > 0) return { kind: "step", step: Number(v) };
  return undefined;
}

/** Whether a sample's best single-photo match is a copy rather than a likeness. */
export function isNearCopy(similarity: number, hashDistance: number): boolean {
  return similarity >= NEAR_COPY_SIMILARITY && hashDistance <= NEAR_COPY_HASH_BITS;
}

/** What one counted sample adds to its checkpoint's score: 0 at SCORE_FLOOR or below, 1 at 1. */
export const sampleScore = (likeness: number) => Math.min(1, Math.max(0, (likeness - SCORE_FLOOR) / (1 - SCORE_FLOOR)));

export interface PhotoMatch {
  photo: string;
  similarity: number;
  hashDistance: number;
}

/**
 * The training photo a sample nearly copies, if any: among the photos it is a near-copy of, the one
 * with the closest hash. Not simply the most similar photo: views of one photo embed alike, so the
 * copied photo is often not the top match by similarity (a zoomed-out copy of photo 4 can sit
 * closest to photo 1 in embedding and still be photo 4 pixel for pixel).
 */
export function nearCopyOf(matches: readonly PhotoMatch[]): PhotoMatch | undefined {
  return matches.filter((m) => isNearCopy(m.similarity, m.hashDistance)).sort((a, b) => a.hashDistance - b.hashDistance || b.similarity - a.similarity)[0];
}

export function summariseCheckpoint(step: number, samples: readonly SampleScore[]): CheckpointRow {
  const counted = samples.filter((s) => s.face && !s.nearCopy && s.likeness !== null && Number.isFinite(s.likeness)).map((s) => s.likeness!);
  const sum = (values: number[]) => values.reduce((a, b) => a + b, 0);
  return {
    step,
    samples: samples.length,
    faces: samples.filter((s) => s.face).length,
    likeness: counted.length ? round3(sum(counted) / counted.length) : null,
    worst: counted.length ? round3(Math.min(...counted)) : null,
    nearCopies: samples.filter((s) => s.nearCopy).length,
    score: samples.length ? round3(sum(counted.map(sampleScore)) / samples.length) : 0,
  };
}

/** Orders rows best first by the rule above (score with TIE_MARGIN, then fewer near-copies, then later step). */
export function rankCheckpoints(rows: readonly CheckpointRow[]): CheckpointRow[] {
  const best = Math.max(...rows.map((r) => r.score));
  const tier = (r: CheckpointRow) => (r.score >= best - TIE_MARGIN ? 0 : 1);
  return [...rows].sort((a, b) => tier(a) - tier(b) || (tier(a) === 1 ? b.score - a.score : 0) || a.nearCopies - b.nearCopies || b.step - a.step);
}

const describeRow = (r: CheckpointRow) =>
  `likeness ${r.likeness?.toFixed(2) ?? "–"}, faces ${r.faces}/${r.samples}${r.nearCopies ? `, ${r.nearCopies} near-cop${r.nearCopies === 1 ? "y" : "ies"}` : ""}, score ${r.score.toFixed(2)}`;

/**
 * The step to register. `steps`: every step with complete weights (sampled or not), including the
 * last; `rows`: the scored (sampled) checkpoints. A `step` choice must be one of `steps` (the caller
 * reports the others).
 */
export function pickCheckpoint(rows: readonly CheckpointRow[], steps: readonly number[], choice: CheckpointChoice): Pick {
  const lastStep = Math.max(...steps);
  const noFaces = rows.every((r) => r.faces === 0);
  const rowOf = (step: number) => rows.find((r) => r.step === step);
  const pick = (step: number, reason: string): Pick => ({ step, lastStep, choice: choice.kind, ...(rowOf(step) ? { row: rowOf(step) } : {}), reason, noFaces });
  if (choice.kind === "step") {
    if (!steps.includes(choice.step)) throw new RangeError(`step ${choice.step} is not one of ${steps.join(", ")}`);
    return pick(choice.step, `--checkpoint ${choice.step} was asked for${rowOf(choice.step) ? ` (${describeRow(rowOf(choice.step)!)})` : " (not sampled: no score)"}.`);
  }
  if (choice.kind === "last") return pick(lastStep, `--checkpoint last: the final step${rowOf(lastStep) ? ` (${describeRow(rowOf(lastStep)!)})` : ""}.`);
  if (rows.length === 0) return pick(lastStep, "No checkpoint has samples to score (a trainer without sampling): keeping the last step.");
  if (noFaces) {
    return pick(lastStep, `No sample of any checkpoint shows a face (${rows.reduce((n, r) => n + r.samples, 0)} samples; the tiny demo model draws noise): keeping the last checkpoint.`);
  }
  const [best, second] = rankCheckpoints(rows);
  const alone = !second || second.score < best!.score - TIE_MARGIN;
  const why = alone
    ? `the highest score (${describeRow(best!)}${second ? `; next: step ${second.step}, ${second.score.toFixed(2)}` : ""})`
    : `tied within ${TIE_MARGIN} for the highest score (${describeRow(best!)}): ${second!.nearCopies > best!.nearCopies ? "fewer near-copies" : "the later step"} wins the tie`;
  return pick(best!.step, `Step ${best!.step} has ${why}.`);
}

/** A Vertex label value for a score: lowercase, digits, `_` and `-` only, so 0.834 → "0_834". */
export function likenessLabel(score: number): string {
  return round3(Math.max(0, score)).toFixed(3).replace(".", "_");
}
