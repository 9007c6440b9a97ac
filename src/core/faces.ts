// Face identity math, pure: embeddings, their similarity, a set's consensus and likeness.
//
// Scale: embeddings are L2-normalised 128-d vectors (face-api's port of the dlib ResNet face
// descriptor), compared by cosine similarity in [-1, 1]; likeness() reports that cosine. Measured on
// the face library's sample photos: one face turned (±13°), mirrored and relit scores 0.94-0.99
// against its set's consensus; 22 different people score 0.81-0.95 pairwise (median 0.88). So
// ≥ 0.93 reads as "the same person", ≤ 0.90 as "someone else", and in between is a look-alike zone
// this model cannot settle (the dlib rule, Euclidean < 0.6 on unit vectors, is cosine > 0.82).

/** RGB pixels, 3 bytes per pixel, row-major. */
export interface RgbImage {
  data: Uint8Array;
  width: number;
  height: number;
}

export type FaceBox = [x0: number, y0: number, x1: number, y1: number];

export interface Face {
  /** Integer pixels of the input image, x1/y1 exclusive. */
  box: FaceBox;
  /** Detector confidence, 0-1. */
  score: number;
  /** L2-normalised identity embedding. */
  embedding: Float32Array;
  /** 68 points (iBUG 300-W order) in input pixels. */
  landmarks?: [number, number][];
}

export function normalizeEmbedding(vector: ArrayLike<number>): Float32Array {
  let sum = 0;
  for (let i = 0; i < vector.length; i++) sum += vector[i]! * vector[i]!;
  const norm = Math.sqrt(sum);
  const out = new Float32Array(vector.length);
  if (norm === 0) return out;
  for (let i = 0; i < vector.length; i++) out[i] = vector[i]! / norm;
  return out;
}

export function cosineSimilarity(a: ArrayLike<number>, b: ArrayLike<number>): number {
  if (a.length !== b.length) throw new Error(`cosineSimilarity: lengths differ (${a.length} vs ${b.length})`);
  let dot = 0;
  let na = 0;
  let nb = 0;
  for (let i = 0; i < a.length; i++) {
    dot += a[i]! * b[i]!;
    na += a[i]! * a[i]!;
    nb += b[i]! * b[i]!;
  }
  return na === 0 || nb === 0 ? 0 : dot / Math.sqrt(na * nb);
}

/** Index of the medoid: the embedding with the highest total similarity to all the others. */
export function medoidIndex(embeddings: readonly ArrayLike<number>[]): number {
  if (!embeddings.length) throw new Error("medoidIndex: no embeddings");
  let best = 0;
  let bestTotal = -Infinity;
  for (let i = 0; i < embeddings.length; i++) {
    let total = 0;
    for (let j = 0; j < embeddings.length; j++) if (i !== j) total += cosineSimilarity(embeddings[i]!, embeddings[j]!);
    if (total > bestTotal) {
      bestTotal = total;
      best = i;
    }
  }
  return best;
}

/**
 * The set's identity: the normalised mean of the embeddings closest to the medoid (the nearest
 * `keep` share, at least one). Robust to a minority of other people: with 10 photos of one person
 * and 2 of a friend the medoid is one of the 10, and trimming drops the friend from the mean.
 */
export function consensusEmbedding(embeddings: readonly ArrayLike<number>[], keep = 0.6): Float32Array {
  const medoid = embeddings[medoidIndex(embeddings)]!;
  const ranked = embeddings
    .map((embedding) => ({ embedding, similarity: cosineSimilarity(embedding, medoid) }))
    .sort((a, b) => b.similarity - a.similarity);
  const kept = ranked.slice(0, Math.max(1, Math.ceil(ranked.length * keep)));
  const mean = new Float64Array(medoid.length);
  for (const { embedding } of kept) {
    const unit = normalizeEmbedding(embedding);
    for (let i = 0; i < mean.length; i++) mean[i]! += unit[i]!;
  }
  return normalizeEmbedding(mean);
}

/**
 * How much a face looks like the reference faces: the mean cosine similarity to them (see the
 * scale above: ≥ 0.93 the same person, ≤ 0.90 someone else). NaN without references.
 */
export function likeness(embedding: ArrayLike<number>, references: readonly ArrayLike<number>[]): number {
  if (!references.length) return Number.NaN;
  let total = 0;
  for (const reference of references) total += cosineSimilarity(embedding, reference);
  return total / references.length;
}

/** Mean pairwise cosine distance (1 - similarity) of a set: 0 when every photo is the same. */
export function spread(embeddings: readonly ArrayLike<number>[]): number {
  let total = 0;
  let pairs = 0;
  for (let i = 0; i < embeddings.length; i++) {
    for (let j = i + 1; j < embeddings.length; j++) {
      total += 1 - cosineSimilarity(embeddings[i]!, embeddings[j]!);
      pairs++;
    }
  }
  return pairs ? total / pairs : 0;
}
