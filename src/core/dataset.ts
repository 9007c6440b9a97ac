// Dataset rules for `avatar prepare`: what is accepted, why a file is skipped, how many photos are
// enough, how near-duplicates are found and how the dataset is named. Pure: no file or image access.
import { badInput } from "./errors.ts";

export const DATASET_RULES = {
  /** Fewer usable photos than this is an error. */
  minImages: 5,
  /** Fewer than this (but at least minImages) is a warning. */
  recommendedMin: 10,
  recommendedMax: 20,
  defaultMaxSize: 1024,
  defaultMinSize: 512,
  /** Bounds for --max-size / --min-size. */
  maxSizeRange: [256, 4096] as const,
  minSizeRange: [64, 4096] as const,
  /** Decompression-bomb guard: checked from the header, before any pixel is decoded. */
  maxInputPixels: 100_000_000,
  /** No selfie needs more; anything bigger is refused before it is read. */
  maxFileBytes: 64 * 1024 * 1024,
  /** A folder with more candidates than this is almost certainly the wrong folder. */
  maxFiles: 5000,
  /** --recursive stops descending here. */
  maxDepth: 8,
  jpegQuality: 92,
  /** dHash grid: (hashWidth + 1) x hashHeight greyscale samples give hashWidth x hashHeight bits. */
  hashWidth: 16,
  hashHeight: 16,
  /** Two photos whose 256-bit dHashes differ in at most this many bits are near-duplicates. */
  nearDuplicateBits: 16,
} as const;

/** Stable reason codes, part of the --json output. */
export type SkipCode =
  | "hidden"
  | "folder"
  | "not-regular"
  | "symlink-outside"
  | "symlink-broken"
  | "symlink-folder"
  | "unreadable"
  | "empty"
  | "file-too-large"
  | "not-image"
  | "heic"
  | "unsupported-format"
  | "corrupt"
  | "too-many-pixels"
  | "too-small"
  | "duplicate"
  | "near-duplicate"
  // Face checks (core/face-checks.ts), on unless --no-face-check:
  | "no-face"
  | "multi-face"
  | "face-too-small"
  | "blurry"
  | "different-person";

export const HEIC_HINT =
  "Convert HEIC/HEIF photos to JPEG first: on macOS `sips -s format jpeg IMG.HEIC --out IMG.jpg`, elsewhere `heif-convert IMG.HEIC IMG.jpg`; or set iPhone Settings > Camera > Formats > Most Compatible.";

export interface SkipDetails {
  width?: number;
  height?: number;
  minSize?: number;
  bytes?: number;
  format?: string;
  of?: string;
  distance?: number;
  message?: string;
  /** Face checks: faces found, sizes in source pixels, the base resolution, measures. */
  faces?: number;
  faceSide?: number;
  cropSide?: number;
  resolution?: number;
  sharpness?: number;
  minSharpness?: number;
  similarity?: number;
  threshold?: number;
}

export function skipReason(code: SkipCode, d: SkipDetails = {}): string {
  const dims = d.width !== undefined && d.height !== undefined ? `${d.width}x${d.height}` : "";
  switch (code) {
    case "hidden":
      return "hidden file";
    case "folder":
      return "sub-folder (use --recursive to include it)";
    case "not-regular":
      return "not a regular file";
    case "symlink-outside":
      return "symbolic link to something outside the folder (not followed)";
    case "symlink-broken":
      return "broken or looping symbolic link";
    case "symlink-folder":
      return "symbolic link to a folder (not followed)";
    case "unreadable":
      return `cannot be read${d.message ? ` (${d.message})` : ""}`;
    case "empty":
      return "empty file";
    case "file-too-large":
      return `file too large (${d.bytes ?? "?"} bytes; limit ${DATASET_RULES.maxFileBytes} bytes)`;
    case "not-image":
      return "not an image";
    case "heic":
      return "HEIC/HEIF is not supported; convert it to JPEG";
    case "unsupported-format":
      return `${d.format ?? "this"} format is not supported; use JPEG, PNG or WebP`;
    case "corrupt":
      return `cannot be decoded (corrupt or truncated${d.message ? `: ${d.message}` : ""})`;
    case "too-many-pixels":
      return `too many pixels (${dims}; limit ${DATASET_RULES.maxInputPixels / 1_000_000} megapixels)`;
    case "too-small":
      return `too small (${dims}; the short side must be at least ${d.minSize ?? DATASET_RULES.defaultMinSize} px)`;
    case "duplicate":
      return `exact duplicate of ${d.of ?? "another photo"}`;
    case "near-duplicate":
      return `near-duplicate of ${d.of ?? "another photo"}${d.distance !== undefined ? ` (distance ${d.distance})` : ""}`;
    case "no-face":
      return "no face found (use --no-face-check for drawings, pets or objects)";
    case "multi-face":
      return `${d.faces ?? "several"} faces of comparable size: crop the photo to the person, or leave it out`;
    case "face-too-small":
      // A photo whose short side is below the resolution fails whatever its face: say so, not "the face is small".
      if (d.width !== undefined && d.height !== undefined && d.resolution !== undefined && Math.min(d.width, d.height) < d.resolution) {
        return `photo is ${d.width}x${d.height}, smaller than the base model's ${d.resolution} px: every crop would need upscaling (use the original photo, not a downsized copy)`;
      }
      return `face too small for the base model's ${d.resolution ?? "?"} px: a crop around it would be ${d.cropSide ?? "?"} px and need upscaling (the face needs ${d.faceSide ?? "more"} px or more)`;
    case "blurry":
      return `face is blurry (sharpness ${d.sharpness !== undefined ? Math.round(d.sharpness) : "?"}; ${d.minSharpness ?? "more"} or more is sharp)`;
    case "different-person":
      return `looks like a different person than the rest of the photos (similarity ${d.similarity?.toFixed(3) ?? "?"} to the set's face; ${d.threshold !== undefined ? `${d.threshold.toFixed(3)} or more is the same person` : "the rest score higher"})`;
  }
}

// ---- formats ---------------------------------------------------------------------------------

/** Formats recognised from the first bytes. Only "decodable" ones are ever handed to the decoder. */
export type SniffedFormat = "jpeg" | "png" | "webp" | "gif" | "tiff" | "avif" | "heic" | "jxl" | "bmp" | "svg" | "pdf" | "psd" | "ico";

export const DECODABLE_FORMATS: readonly SniffedFormat[] = ["jpeg", "png", "webp", "gif", "tiff", "avif", "jxl"];

/** How many leading bytes sniffFormat wants. */
export const SNIFF_BYTES = 64;

function ascii(bytes: Uint8Array, start: number, length: number): string {
  let s = "";
  for (let i = start; i < start + length && i < bytes.length; i++) s += String.fromCharCode(bytes[i]!);
  return s;
}

const avifBrands = new Set(["avif", "avis"]);
const heicBrands = new Set(["heic", "heix", "hevc", "hevx", "heim", "heis", "hevm", "hevs", "mif1", "msf1", "mif2", "miaf"]);

/** The image format from magic bytes, or undefined for anything else (text, archives, …). */
export function sniffFormat(head: Uint8Array): SniffedFormat | undefined {
  const b = head;
  if (b.length >= 3 && b[0] === 0xff && b[1] === 0xd8 && b[2] === 0xff) return "jpeg";
  if (b.length >= 8 && ascii(b, 0, 8) === "\x89PNG\r\n\x1a\n") return "png";
  if (b.length >= 12 && ascii(b, 0, 4) === "RIFF" && ascii(b, 8, 4) === "WEBP") return "webp";
  if (b.length >= 6 && (ascii(b, 0, 6) === "GIF87a" || ascii(b, 0, 6) === "GIF89a")) return "gif";
  if (b.length >= 4 && (ascii(b, 0, 4) === "II*\0" || ascii(b, 0, 4) === "MM\0*" || ascii(b, 0, 4) === "II+\0" || ascii(b, 0, 4) === "MM\0+")) return "tiff";
  if (b.length >= 12 && ascii(b, 4, 4) === "ftyp") {
    const size = ((b[0]! << 24) | (b[1]! << 16) | (b[2]! << 8) | b[3]!) >>> 0;
    const major = ascii(b, 8, 4);
    const brands = [major];
    for (let i = 16; i + 4 <= Math.min(size, b.length); i += 4) brands.push(ascii(b, i, 4));
    if (brands.some((brand) => avifBrands.has(brand))) return "avif";
    if (brands.some((brand) => heicBrands.has(brand))) return "heic";
    return undefined;
  }
  if (b.length >= 2 && b[0] === 0xff && b[1] === 0x0a) return "jxl";
  if (b.length >= 12 && ascii(b, 0, 12) === "\0\0\0\x0cJXL \r\n\x87\n") return "jxl";
  if (b.length >= 2 && ascii(b, 0, 2) === "BM") return "bmp";
  if (b.length >= 4 && ascii(b, 0, 4) === "%PDF") return "pdf";
  if (b.length >= 4 && ascii(b, 0, 4) === "8BPS") return "psd";
  if (b.length >= 4 && b[0] === 0 && b[1] === 0 && b[2] === 1 && b[3] === 0) return "ico";
  const text = ascii(b, 0, b.length).replace(/^\uFEFF|^\xEF\xBB\xBF/, "").trimStart().toLowerCase();
  if (text.startsWith("<svg") || (text.startsWith("<?xml") && text.includes("<svg"))) return "svg";
  return undefined;
}

// ---- geometry --------------------------------------------------------------------------------

/** EXIF orientations 5-8 swap width and height. */
export function orientedSize(width: number, height: number, orientation: number | undefined): { width: number; height: number } {
  return orientation !== undefined && orientation >= 5 && orientation <= 8 ? { width: height, height: width } : { width, height };
}

/** The size after fitting inside maxSize x maxSize, never enlarging (rounded like the resizer). */
export function fitInside(width: number, height: number, maxSize: number): { width: number; height: number } {
  const long = Math.max(width, height);
  if (long <= maxSize) return { width, height };
  const scale = maxSize / long;
  return width >= height
    ? { width: maxSize, height: Math.max(1, Math.round(height * scale)) }
    : { width: Math.max(1, Math.round(width * scale)), height: maxSize };
}

/** Header dimensions → a skip code, or undefined when the photo may be decoded. */
export function dimensionProblem(width: number, height: number, minSize: number): "too-many-pixels" | "too-small" | undefined {
  if (!(width > 0 && height > 0)) return undefined; // unknown here: the decoder decides
  if (width * height > DATASET_RULES.maxInputPixels) return "too-many-pixels";
  if (Math.min(width, height) < minSize) return "too-small";
  return undefined;
}

export function validateSizes(maxSize: number, minSize: number): void {
  const [maxLo, maxHi] = DATASET_RULES.maxSizeRange;
  const [minLo, minHi] = DATASET_RULES.minSizeRange;
  if (!Number.isInteger(maxSize) || maxSize < maxLo || maxSize > maxHi) {
    throw badInput(`--max-size must be a whole number from ${maxLo} to ${maxHi}, got ${maxSize}.`, `The default is ${DATASET_RULES.defaultMaxSize}.`);
  }
  if (!Number.isInteger(minSize) || minSize < minLo || minSize > minHi) {
    throw badInput(`--min-size must be a whole number from ${minLo} to ${minHi}, got ${minSize}.`, `The default is ${DATASET_RULES.defaultMinSize}.`);
  }
  if (minSize > maxSize) {
    throw badInput(`--min-size (${minSize}) is larger than --max-size (${maxSize}).`, "Every kept photo is at least --min-size on its short side and at most --max-size on its long side.");
  }
}

// ---- perceptual hash -------------------------------------------------------------------------

/**
 * Difference hash of a (hashWidth+1) x hashHeight greyscale grid, row-major: bit = left < right.
 * Returned as lowercase hex (hashWidth*hashHeight/4 digits).
 */
export function differenceHash(grey: Uint8Array, width: number = DATASET_RULES.hashWidth + 1, height: number = DATASET_RULES.hashHeight): string {
  if (grey.length !== width * height) throw new Error(`differenceHash: expected ${width * height} samples, got ${grey.length}`);
  const bits = (width - 1) * height;
  const bytes = new Uint8Array(Math.ceil(bits / 8));
  let bit = 0;
  for (let y = 0; y < height; y++) {
    for (let x = 0; x < width - 1; x++) {
      if (grey[y * width + x]! < grey[y * width + x + 1]!) bytes[bit >> 3]! |= 0x80 >> (bit & 7);
      bit++;
    }
  }
  return Buffer.from(bytes).toString("hex");
}

function popcount32(v: number): number {
  v = v - ((v >>> 1) & 0x55555555);
  v = (v & 0x33333333) + ((v >>> 2) & 0x33333333);
  return (Math.imul((v + (v >>> 4)) & 0x0f0f0f0f, 0x01010101) >>> 24) & 0xff;
}

/** A hex hash as 32-bit words, for allocation-free distance computations. */
export function hashWords(hex: string): Uint32Array {
  if (hex.length % 8 !== 0 || !/^[0-9a-f]*$/i.test(hex)) throw new Error("hashWords: expected hex in whole 32-bit words");
  const words = new Uint32Array(hex.length / 8);
  for (let i = 0; i < words.length; i++) words[i] = parseInt(hex.slice(i * 8, i * 8 + 8), 16) >>> 0;
  return words;
}

function wordDistance(a: Uint32Array, b: Uint32Array): number {
  let d = 0;
  for (let i = 0; i < a.length; i++) d += popcount32((a[i]! ^ b[i]!) >>> 0);
  return d;
}

/** Number of differing bits between two equal-length hex hashes (whole 32-bit words). */
export function hammingDistance(a: string, b: string): number {
  if (a.length !== b.length) throw new Error("hammingDistance: hashes differ in length");
  return wordDistance(hashWords(a), hashWords(b));
}

// ---- selection -------------------------------------------------------------------------------

export interface Candidate {
  /** Path relative to the folder, '/'-separated; unique. */
  path: string;
  /** sha256 of the normalised JPEG. */
  sha256: string;
  /** differenceHash of the normalised image. */
  dhash: string;
  /** Source pixel count: among near-duplicates the largest original is kept. */
  sourcePixels: number;
  /** Reached through an in-folder symlink: the real file wins an exact-duplicate tie. */
  symlink?: boolean;
}

export type Decision =
  | { path: string; kept: true; entry: string; index: number }
  | { path: string; kept: false; code: "duplicate" | "near-duplicate"; of: string; distance?: number };

/** Compare paths by code unit, so the order never depends on the machine's locale. */
export function comparePaths(a: string, b: string): number {
  return a < b ? -1 : a > b ? 1 : 0;
}

/**
 * Drops exact duplicates (same normalised bytes: the first path wins, real files before symlinks) and near-duplicates (dHash
 * distance ≤ threshold: the largest original wins, ties broken by content hash). The kept photos
 * are ordered by content hash, so renaming files changes neither the zip nor its name.
 */
export function selectImages(candidates: readonly Candidate[], threshold: number = DATASET_RULES.nearDuplicateBits): Decision[] {
  const byPath = [...candidates].sort((a, b) => comparePaths(a.path, b.path));
  const decisions = new Map<string, Decision>();
  const firstBySha = new Map<string, Candidate>();
  const unique: Candidate[] = [];
  const realFirst = [...byPath].sort((a, b) => Number(a.symlink ?? false) - Number(b.symlink ?? false) || comparePaths(a.path, b.path));
  for (const c of realFirst) {
    const first = firstBySha.get(c.sha256);
    if (first) decisions.set(c.path, { path: c.path, kept: false, code: "duplicate", of: first.path });
    else {
      firstBySha.set(c.sha256, c);
      unique.push(c);
    }
  }
  unique.sort((a, b) => b.sourcePixels - a.sourcePixels || comparePaths(a.sha256, b.sha256));
  const kept: Candidate[] = [];
  const keptWords: Uint32Array[] = [];
  for (const c of unique) {
    const words = hashWords(c.dhash);
    let nearest = -1;
    let nearestDistance = Infinity;
    for (let k = 0; k < kept.length; k++) {
      const d = wordDistance(words, keptWords[k]!);
      if (d <= threshold && d < nearestDistance) {
        nearest = k;
        nearestDistance = d;
      }
    }
    if (nearest >= 0) decisions.set(c.path, { path: c.path, kept: false, code: "near-duplicate", of: kept[nearest]!.path, distance: nearestDistance });
    else {
      kept.push(c);
      keptWords.push(words);
    }
  }
  kept.sort((a, b) => comparePaths(a.sha256, b.sha256));
  kept.forEach((c, i) => decisions.set(c.path, { path: c.path, kept: true, entry: entryName(i, kept.length), index: i }));
  return byPath.map((c) => decisions.get(c.path)!);
}

// ---- naming and verdicts ---------------------------------------------------------------------

/** Archive entry names carry no user path: 0001.jpg, 0002.jpg, … (wider only past 9999). */
export function entryName(index: number, total: number): string {
  const width = Math.max(4, String(total).length);
  return `${String(index + 1).padStart(width, "0")}.jpg`;
}

/** The dataset's name: sha256 over the normalised images' sha256s, in zip order, and faces.json's. */
export function datasetHash(imageSha256s: readonly string[], manifestSha256?: string): string {
  // crypto is fetched here, not imported: `prepare`'s help reads DATASET_RULES on every start-up
  // and loading node:crypto there costs more than the rest of the CLI surface.
  const hash = process.getBuiltinModule("node:crypto").createHash("sha256");
  hash.update("avatar-dataset-v1\n");
  for (const sha of imageSha256s) hash.update(`${sha}\n`);
  // The face manifest (faces.json) is part of the dataset; without it the hash is what it always was.
  if (manifestSha256) hash.update(`faces.json ${manifestSha256}\n`);
  return hash.digest("hex");
}

export interface CountVerdict {
  level: "error" | "warning" | "ok";
  message?: string;
}

export function countVerdict(usable: number): CountVerdict {
  const { minImages, recommendedMin, recommendedMax } = DATASET_RULES;
  if (usable < minImages) {
    return { level: "error", message: `Only ${usable} usable photo${usable === 1 ? "" : "s"}; at least ${minImages} are needed (${recommendedMin}-${recommendedMax} recommended).` };
  }
  if (usable < recommendedMin) {
    return { level: "warning", message: `Only ${usable} usable photos; ${recommendedMin}-${recommendedMax} give a noticeably better likeness.` };
  }
  if (usable > recommendedMax * 3) {
    return { level: "ok", message: `${usable} photos: more than ${recommendedMax} rarely helps and makes training slower.` };
  }
  return { level: "ok" };
}

/**
 * Exact size of the dataset zip (workflows/zip.ts): STORE entries written from streams, so each has
 * a data descriptor. Local header 30 + name + data + descriptor 16; central header 46 + name; end
 * record 22. No comments, no extra fields, below 4 GiB (no ZIP64).
 */
export function datasetZipSize(images: readonly { entry: string; bytes: number }[], extra: readonly { entry: string; bytes: number }[] = []): number {
  let total = 22;
  for (const image of [...images, ...extra]) total += 30 + 16 + 46 + 2 * Buffer.byteLength(image.entry) + image.bytes;
  return total;
}
