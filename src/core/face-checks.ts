// What prepare decides from faces: the per-photo skip rules, the identity outliers of a set, the
// pose/expression spread and the one-line advice. Pure: the caller detects and measures.
import { consensusEmbedding, cosineSimilarity, spread, type Face } from "./faces.ts";

export const FACE_RULES = {
  /** A second face at least this tall relative to the largest is "comparable": whose photo is it? */
  comparableFace: 0.6,
  /** Variance of the Laplacian on the face resampled to `sharpnessSide` px: below this is blurry. */
  minSharpness: 40,
  sharpnessSide: 128,
  /** Mean face luminance (0-255) outside this range earns a note. */
  exposure: [60, 200] as const,
  /** Identity: below the set's median similarity by more than max(margin, 3 robust SDs) is someone else… */
  identityMargin: 0.035,
  /** …and so is anything below this (the dlib "same person" boundary, Euclidean 0.6 on unit vectors)… */
  identityFloor: 0.82,
  /**
   * …but never a photo at or above this: one person's photos, turned up to ±13° and relit, scored
   * 0.936+ against their set in the sample photos; two different people up to 0.947 pairwise (so a
   * look-alike can pass; see README).
   */
  identityCeiling: 0.93,
  /** Fewer faces than this and there is no majority to compare with. */
  identityMinFaces: 3,
} as const;

/** Per-photo rules after detection: undefined when the photo's one clear face may be used. */
export function faceCountProblem(faces: readonly Pick<Face, "box">[]): "no-face" | "multi-face" | undefined {
  if (faces.length === 0) return "no-face";
  if (faces.length === 1) return undefined;
  const heights = faces.map(({ box }) => box[3] - box[1]).sort((a, b) => b - a);
  return heights[1]! >= heights[0]! * FACE_RULES.comparableFace ? "multi-face" : undefined;
}

/** Variance of the 4-neighbour Laplacian over a greyscale image (edges excluded): focus measure. */
export function laplacianVariance(grey: Uint8Array, width: number, height: number): number {
  if (grey.length !== width * height) throw new Error(`laplacianVariance: expected ${width * height} samples, got ${grey.length}`);
  if (width < 3 || height < 3) return 0;
  let sum = 0;
  let sumSq = 0;
  let n = 0;
  for (let y = 1; y < height - 1; y++) {
    for (let x = 1; x < width - 1; x++) {
      const i = y * width + x;
      const value = grey[i - 1]! + grey[i + 1]! + grey[i - width]! + grey[i + width]! - 4 * grey[i]!;
      sum += value;
      sumSq += value * value;
      n++;
    }
  }
  const mean = sum / n;
  return sumSq / n - mean * mean;
}

export function meanValue(grey: Uint8Array): number {
  let sum = 0;
  for (const value of grey) sum += value;
  return grey.length ? sum / grey.length : 0;
}

export function exposureNote(luma: number): string | undefined {
  const [low, high] = FACE_RULES.exposure;
  if (luma < low) return `face is dark (mean ${Math.round(luma)}/255)`;
  if (luma > high) return `face is very bright (mean ${Math.round(luma)}/255)`;
  return undefined;
}

// ---- identity across the set -------------------------------------------------------------------

export interface IdentityVerdict {
  /** Similarity of each embedding to the set's consensus, in input order. */
  similarity: number[];
  /** Indices of the photos that look like someone else. */
  outliers: number[];
  /** The similarity below which a photo is someone else (NaN when the set is too small to tell). */
  threshold: number;
}

const median = (values: readonly number[]) => {
  const sorted = [...values].sort((a, b) => a - b);
  const mid = sorted.length >> 1;
  return sorted.length % 2 ? sorted[mid]! : (sorted[mid - 1]! + sorted[mid]!) / 2;
};

/**
 * Which photos show someone other than the set's majority: each embedding is compared with the
 * consensus (core/faces), and an outlier is far below the set's own typical similarity (relative,
 * so one person photographed in many conditions is not flagged) or below the absolute floor. At
 * most a minority is ever flagged: the consensus is the majority's face by construction.
 */
export function identityOutliers(embeddings: readonly ArrayLike<number>[]): IdentityVerdict {
  if (embeddings.length < FACE_RULES.identityMinFaces) {
    return { similarity: embeddings.map(() => Number.NaN), outliers: [], threshold: Number.NaN };
  }
  // Pass 1 against the trimmed consensus finds the clear outliers; pass 2 compares everyone with the
  // plain mean of the rest, so a member that the trimming happened to leave out is not penalised.
  const first = judge(embeddings, consensusEmbedding(embeddings));
  const inliers = embeddings.filter((_, i) => first.similarity[i]! >= first.threshold);
  const { similarity, threshold } = inliers.length ? judge(embeddings, consensusEmbedding(inliers, 1)) : first;
  const ranked = similarity.map((s, i) => ({ s, i })).filter(({ s }) => s < threshold).sort((a, b) => a.s - b.s);
  const outliers = ranked.slice(0, Math.ceil(embeddings.length / 2) - 1).map(({ i }) => i).sort((a, b) => a - b);
  return { similarity, outliers, threshold };
}

function judge(embeddings: readonly ArrayLike<number>[], consensus: Float32Array): { similarity: number[]; threshold: number } {
  const similarity = embeddings.map((embedding) => cosineSimilarity(embedding, consensus));
  const mid = median(similarity);
  const robustSd = 1.4826 * median(similarity.map((s) => Math.abs(s - mid)));
  const relative = mid - Math.max(FACE_RULES.identityMargin, 3 * robustSd);
  return { similarity, threshold: Math.min(FACE_RULES.identityCeiling, Math.max(FACE_RULES.identityFloor, relative)) };
}

// ---- pose and expression -----------------------------------------------------------------------

export interface PoseMeasure {
  /** Nose tip left/right of the eyes' midpoint, in inter-eye distances: ~0 frontal, ±0.3+ turned. */
  yaw: number;
  /** Nose tip below the eyes' midpoint, in inter-eye distances (tilt up/down changes it). */
  pitch: number;
  /** Inner-lip gap over mouth width: 0 closed, ~0.3+ open (laughing, talking). */
  mouthOpen: number;
}

const mean2 = (points: readonly [number, number][]): [number, number] => [
  points.reduce((s, p) => s + p[0], 0) / points.length,
  points.reduce((s, p) => s + p[1], 0) / points.length,
];

/** Pose and expression from the 68 landmarks (iBUG order), or undefined without them. */
export function poseOf(landmarks: readonly [number, number][] | undefined): PoseMeasure | undefined {
  if (!landmarks || landmarks.length !== 68) return undefined;
  const leftEye = mean2(landmarks.slice(36, 42));
  const rightEye = mean2(landmarks.slice(42, 48));
  const eyes: [number, number] = [(leftEye[0] + rightEye[0]) / 2, (leftEye[1] + rightEye[1]) / 2];
  const eyeDistance = Math.hypot(rightEye[0] - leftEye[0], rightEye[1] - leftEye[1]);
  if (eyeDistance === 0) return undefined;
  const nose = landmarks[30]!;
  const mouthWidth = Math.hypot(landmarks[54]![0] - landmarks[48]![0], landmarks[54]![1] - landmarks[48]![1]);
  const lipGap = Math.hypot(landmarks[66]![0] - landmarks[62]![0], landmarks[66]![1] - landmarks[62]![1]);
  return {
    yaw: (nose[0] - eyes[0]) / eyeDistance,
    pitch: (nose[1] - eyes[1]) / eyeDistance,
    mouthOpen: mouthWidth ? lipGap / mouthWidth : 0,
  };
}

const standardDeviation = (values: readonly number[]) => {
  if (values.length < 2) return 0;
  const m = values.reduce((s, v) => s + v, 0) / values.length;
  return Math.sqrt(values.reduce((s, v) => s + (v - m) ** 2, 0) / (values.length - 1));
};

export interface FaceSetSummary {
  usable: number;
  /** Identity spread: mean pairwise cosine distance of the kept faces' embeddings. */
  identitySpread: number;
  /** Standard deviations across the kept photos (see PoseMeasure). */
  pose: { yaw: number; pitch: number; mouthOpen: number };
  variety: "low" | "medium" | "high";
  /** One line when the set is weak, else undefined. */
  advice?: string;
}

export function summarizeFaceSet(kept: readonly { embedding: ArrayLike<number>; pose?: PoseMeasure }[], recommendedMin: number): FaceSetSummary {
  const poses = kept.flatMap((k) => (k.pose ? [k.pose] : []));
  const pose = {
    yaw: standardDeviation(poses.map((p) => p.yaw)),
    pitch: standardDeviation(poses.map((p) => p.pitch)),
    mouthOpen: standardDeviation(poses.map((p) => p.mouthOpen)),
  };
  const identitySpread = spread(kept.map((k) => k.embedding));
  // Thresholds from the sample sets: one frozen moment ~0.01 and <0.05 yaw SD; a varied selfie set ≥ 0.1 yaw SD.
  const score = Number(pose.yaw >= 0.08) + Number(pose.yaw >= 0.16) + Number(pose.mouthOpen >= 0.08) + Number(identitySpread >= 0.03);
  const variety = score >= 3 ? "high" : score >= 1 ? "medium" : "low";
  let advice: string | undefined;
  if (kept.length < recommendedMin) advice = `Only ${kept.length} usable photos: ${recommendedMin}-20 of one person give a noticeably better likeness.`;
  else if (pose.yaw < 0.08) advice = "Every photo faces the camera the same way: add a few three-quarter views and turned heads.";
  else if (pose.mouthOpen < 0.04 && identitySpread < 0.03) advice = "The photos look alike (one moment?): add different days, lighting, backgrounds and expressions.";
  return { usable: kept.length, identitySpread, pose, variety, ...(advice ? { advice } : {}) };
}
