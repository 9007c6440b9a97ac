// avatar prepare: scan a folder safely, decode and normalise each photo (orientation, size, sRGB
// JPEG without metadata), drop duplicates, and report every file. Normalised JPEGs are spooled to a
// private temporary folder so the zip can be streamed from them without decoding twice; only small
// per-image records stay in memory, whatever the folder size. With face checks (the default for
// commands; --no-face-check turns them off) each photo must show one clear face of the set's person
// and is stored as a square crop around it at the base model's resolution (prepare-faces.ts), and
// the dataset gains faces.json with the face boxes (core/face-manifest.ts).
import { createHash } from "node:crypto";
import { mkdtemp, rm } from "node:fs/promises";
import { availableParallelism, tmpdir } from "node:os";
import { isAbsolute, join, relative, resolve } from "node:path";
import type { Context } from "../context.ts";
import {
  comparePaths,
  countVerdict,
  datasetHash,
  DECODABLE_FORMATS,
  DATASET_RULES,
  differenceHash,
  dimensionProblem,
  HEIC_HINT,
  orientedSize,
  selectImages,
  skipReason,
  SNIFF_BYTES,
  sniffFormat,
  validateSizes,
  type Candidate,
  type SkipCode,
  type SkipDetails,
  type SniffedFormat,
} from "../core/dataset.ts";
import { AvatarError, badInput } from "../core/errors.ts";
import { identityOutliers, summarizeFaceSet, type FaceSetSummary, type PoseMeasure } from "../core/face-checks.ts";
import { FACES_ENTRY, facesManifest } from "../core/face-manifest.ts";
import type { FaceBox } from "../core/faces.ts";
import type { FaceModel } from "./faces/index.ts";
import { prepareFace, type FaceOutcome } from "./prepare-faces.ts";
import { isInside, readRegular, resolveFolder, scan, Scratch, skipped, writeOut, type FileReport, type Found, type Scratches } from "./prepare-files.ts";
import { MemoryPacer } from "./prepare-memory.ts";

export type { FileReport } from "./prepare-files.ts";

export interface PrepareOptions {
  dir: string;
  recursive?: boolean;
  maxSize?: number;
  minSize?: number;
  /** Also write the normalised images here (0001.jpg, …) for inspection. */
  out?: string;
  /** Called with the absolute path of every file whose content is read (also shown with --verbose). */
  onRead?: (path: string) => void;
  /**
   * Check every photo for one clear face of the set's person and store face crops plus faces.json.
   * Off unless asked: commands pass the config's faceCheck (on by default; --no-face-check).
   */
  faceCheck?: boolean;
  /** The base model's training resolution: face crops are this size (default 1024, SDXL's). */
  baseResolution?: number;
}

export interface PreparedImage {
  entry: string;
  path: string;
  sha256: string;
  bytes: number;
  /** The spooled normalised JPEG. */
  file: string;
}

/** faces.json, when face checks ran and at least one kept image has a face. */
export interface PreparedManifest {
  entry: typeof FACES_ENTRY;
  data: Buffer;
  sha256: string;
  bytes: number;
}

export interface FaceSummary extends FaceSetSummary {
  /** The crops' side: the base model's resolution. */
  resolution: number;
  framings: { "close-up": number; "head-and-shoulders": number };
}

export interface PrepareSummary {
  dir: string;
  files: FileReport[];
  /** Kept photos in archive order. */
  images: Omit<PreparedImage, "file">[];
  /** The dataset's content hash (see core/dataset datasetHash). */
  sha256: string;
  counts: { scanned: number; kept: number; skipped: number };
  sourceBytes: number;
  bytes: number;
  maxSize: number;
  minSize: number;
  warnings: string[];
  out?: string;
  /** Face checks only: the dataset summary (usable photos, variety, advice). */
  faces?: FaceSummary;
}

export interface PreparedDataset {
  summary: PrepareSummary;
  images: PreparedImage[];
  /** faces.json for the zip (absent without face checks). */
  manifest?: PreparedManifest;
  /** Removes the spooled images. */
  dispose(): Promise<void>;
}

type Sharp = typeof import("sharp").default;

interface FaceSettings {
  model: FaceModel;
  resolution: number;
}

interface Faced {
  embedding: Float32Array;
  pose?: PoseMeasure;
  entryBox: FaceBox;
  width: number;
  height: number;
}

interface Processed {
  report: FileReport;
  candidate?: Candidate & { file: string; bytes: number };
  faced?: Faced;
}

const interrupted = () => new AvatarError("INTERRUPTED", "Interrupted.");

// ---- read, check, normalise, hash --------------------------------------------------------------

function decoderProblem(sharp: Sharp, format: SniffedFormat | undefined): { code: SkipCode; details?: SkipDetails } | undefined {
  if (format === undefined) return { code: "not-image" };
  if (format === "heic") return { code: "heic" };
  if (!DECODABLE_FORMATS.includes(format)) return { code: "unsupported-format", details: { format: format.toUpperCase() } };
  const sharpFormat = format === "avif" ? "heif" : format;
  const info = (sharp.format as unknown as Record<string, { input?: { buffer?: boolean } } | undefined>)[sharpFormat];
  if (!info?.input?.buffer) return { code: "unsupported-format", details: { format: format.toUpperCase() } };
  return undefined;
}

function errorText(error: unknown): string {
  return (error instanceof Error ? error.message : String(error)).split("\n")[0]!.replace(/^Input (buffer|file) /, "").slice(0, 160);
}

async function processOne(
  sharp: Sharp,
  found: Found,
  scratch: Scratches,
  options: Required<Pick<PrepareOptions, "maxSize" | "minSize">> & { spool: string; index: number; pacer: MemoryPacer; faces?: FaceSettings },
): Promise<Processed> {
  const { rel } = found;
  const read = await readRegular(found.abs, scratch.input);
  if ("code" in read) return { report: skipped(rel, read.code, read.details) };
  const data = read.data;
  const format = sniffFormat(data.subarray(0, SNIFF_BYTES));
  const problem = decoderProblem(sharp, format);
  if (problem) return { report: skipped(rel, problem.code, problem.details, format ? { format } : {}) };

  const inputOptions = {
    limitInputPixels: DATASET_RULES.maxInputPixels,
    failOn: "warning" as const,
    sequentialRead: true,
    pages: 1,
    page: 0,
  };
  let meta;
  try {
    // Header only: no pixel is decoded here, so the pixel cap is checked by us just below.
    meta = await sharp(data, { ...inputOptions, limitInputPixels: false }).metadata();
  } catch (error) {
    return { report: skipped(rel, "corrupt", { message: errorText(error) }, { format }) };
  }
  const rawWidth = meta.width ?? 0;
  const rawHeight = meta.pageHeight ?? meta.height ?? 0;
  const { width, height } = orientedSize(rawWidth, rawHeight, meta.orientation);
  const source = { width, height, bytes: data.length };
  const dims = dimensionProblem(width, height, options.minSize);
  if (dims) return { report: skipped(rel, dims, { width, height, minSize: options.minSize }, { format, source }) };

  const notes: string[] = [];
  if (meta.orientation && meta.orientation > 1) notes.push(`turned upright (EXIF orientation ${meta.orientation})`);
  if ((meta.pages ?? 1) > 1) notes.push(`first of ${meta.pages} frames`);
  if (meta.space === "cmyk") notes.push("CMYK converted to sRGB");
  if (meta.depth && !["uchar", "char"].includes(meta.depth)) notes.push(`${meta.depth === "ushort" ? "16-bit" : meta.depth} reduced to 8-bit`);
  if (meta.hasAlpha) notes.push("transparency flattened onto white");
  if (!options.faces && Math.max(width, height) > options.maxSize) notes.push(`resized from ${width}x${height}`);

  // The normalised JPEG goes straight to the spool file (no large buffer on the JS side), then is
  // read back into the worker's scratch buffer for hashing. With face checks it is the face crop.
  const file = join(options.spool, `${String(options.index).padStart(6, "0")}.jpg`);
  let info: { width: number; height: number };
  let faced: Extract<FaceOutcome, { embedding: Float32Array }> | undefined;
  if (options.faces) {
    const { model, resolution } = options.faces;
    let outcome: FaceOutcome;
    try {
      outcome = await prepareFace({ sharp, model, data, inputOptions, width, height, hasAlpha: meta.hasAlpha === true, resolution, file });
    } catch (error) {
      await rm(file, { force: true });
      const text = errorText(error);
      if (/pixel limit/i.test(text)) return { report: skipped(rel, "too-many-pixels", { width, height }, { format, source }) };
      return { report: skipped(rel, "corrupt", { message: text }, { format, source }) };
    }
    if ("skip" in outcome) return { report: skipped(rel, outcome.skip, outcome.details, { format, source, face: outcome.face }) };
    faced = outcome;
    info = outcome.info;
    notes.push(...outcome.notes);
  } else {
    try {
      let pipeline = sharp(data, inputOptions)
        .timeout({ seconds: 60 })
        .autoOrient()
        .resize({ width: options.maxSize, height: options.maxSize, fit: "inside", withoutEnlargement: true });
      if (meta.hasAlpha) pipeline = pipeline.flatten({ background: "#ffffff" });
      info = await pipeline
        .toColourspace("srgb")
        .jpeg({ quality: DATASET_RULES.jpegQuality, chromaSubsampling: "4:2:0", mozjpeg: false })
        .toFile(file);
    } catch (error) {
      await rm(file, { force: true });
      const text = errorText(error);
      if (/pixel limit/i.test(text)) return { report: skipped(rel, "too-many-pixels", { width, height }, { format, source }) };
      return { report: skipped(rel, "corrupt", { message: text }, { format, source }) };
    }
  }
  const back = await readRegular(file, scratch.output);
  if ("code" in back) throw new AvatarError("INTERNAL", `Could not read back the normalised copy of ${rel} (${back.code}).`);
  const jpeg = back.data;
  const grid = await sharp(jpeg)
    .greyscale()
    .resize(DATASET_RULES.hashWidth + 1, DATASET_RULES.hashHeight, { fit: "fill", kernel: "cubic" })
    .raw()
    .toBuffer();
  const sha256 = createHash("sha256").update(jpeg).digest("hex");
  options.pacer.add(data.length + jpeg.length);
  const report: FileReport = { path: rel, status: "kept", format, source, width: info.width, height: info.height, bytes: jpeg.length, sha256, notes, ...(faced ? { face: faced.face } : {}) };
  return {
    report,
    candidate: { path: rel, sha256, dhash: differenceHash(grid), sourcePixels: width * height, symlink: found.symlink, file, bytes: jpeg.length },
    ...(faced ? { faced: { embedding: faced.embedding, pose: faced.pose, entryBox: faced.entryBox, width: info.width, height: info.height } } : {}),
  };
}

async function pool<T, R>(
  items: readonly T[],
  workers: number,
  signal: AbortSignal,
  fn: (item: T, index: number, scratch: Scratches) => Promise<R>,
  onDone: () => void,
): Promise<R[]> {
  const results: R[] = new Array(items.length);
  let next = 0;
  const run = async () => {
    const scratch: Scratches = { input: new Scratch(), output: new Scratch() };
    while (next < items.length) {
      if (signal.aborted) throw interrupted();
      const i = next++;
      results[i] = await fn(items[i]!, i, scratch);
      onDone();
    }
  };
  await Promise.all(Array.from({ length: Math.min(workers, items.length) }, run));
  return results;
}

// ---- different-person ------------------------------------------------------------------------

/** Turns the photos whose face is someone else's into skips (set-level, after every photo is in). */
function skipOtherPeople(processed: Processed[]): string[] {
  const faced = processed.filter((p) => p.candidate && p.faced);
  const verdict = identityOutliers(faced.map((p) => p.faced!.embedding));
  faced.forEach((p, i) => {
    if (p.report.face && Number.isFinite(verdict.similarity[i])) p.report.face.similarity = Number(verdict.similarity[i]!.toFixed(3));
  });
  const names: string[] = [];
  for (const i of verdict.outliers) {
    const p = faced[i]!;
    const details = { similarity: verdict.similarity[i]!, threshold: verdict.threshold };
    p.report = { ...p.report, status: "skipped", code: "different-person", reason: skipReason("different-person", details) };
    delete p.candidate;
    names.push(p.report.path);
  }
  return names;
}

// ---- the workflow ----------------------------------------------------------------------------

export async function prepareDataset(ctx: Pick<Context, "cwd" | "out" | "signal">, options: PrepareOptions): Promise<PreparedDataset> {
  const maxSize = options.maxSize ?? DATASET_RULES.defaultMaxSize;
  const minSize = options.minSize ?? DATASET_RULES.defaultMinSize;
  validateSizes(maxSize, minSize);
  const root = await resolveFolder(ctx.cwd, options.dir);
  const outDir = options.out ? resolve(ctx.cwd, options.out) : undefined;
  if (outDir && isInside(outDir, root) && options.recursive) {
    throw badInput("--out may not be inside the photo folder with --recursive.", "The normalised copies would be read back as photos next time; pick a folder outside it.");
  }

  const skips: FileReport[] = [];
  const found = await scan(root, options.recursive === true, skips);

  // The face model loads (~0.3 s) while sharp does; photos queue for it one at a time.
  const loadingModel = options.faceCheck ? import("./faces/index.ts").then((faces) => faces.loadFaceModel()) : undefined;
  const { default: sharp } = await import("sharp");
  sharp.cache(false);
  const faces: FaceSettings | undefined = loadingModel ? { model: await loadingModel, resolution: options.baseResolution ?? 1024 } : undefined;
  const spool = await mkdtemp(join(tmpdir(), "avatar-prepare-"));
  const dispose = () => rm(spool, { recursive: true, force: true });
  try {
    const progress = found.length > 0 ? ctx.out.progress(faces ? "Preparing photos (checking faces)" : "Preparing photos", found.length, "steps") : undefined;
    let done = 0;
    const workers = Math.max(1, Math.min(4, availableParallelism()));
    const pacer = new MemoryPacer();
    const processed = await pool(
      found,
      workers,
      ctx.signal,
      (item, index, scratch) => {
        options.onRead?.(item.abs);
        ctx.out.detail(`reading ${item.rel}`);
        return processOne(sharp, item, scratch, { maxSize, minSize, spool, index, pacer, ...(faces ? { faces } : {}) });
      },
      () => progress?.update(++done),
    );
    progress?.done();

    const otherPeople = faces ? skipOtherPeople(processed) : [];
    const candidates = processed.flatMap((p) => (p.candidate ? [p.candidate] : []));
    const byPath = new Map(candidates.map((c) => [c.path, c]));
    const facedByPath = new Map(processed.flatMap((p) => (p.candidate && p.faced ? [[p.candidate.path, p.faced] as const] : [])));
    const decisions = new Map(selectImages(candidates).map((d) => [d.path, d]));
    const reports = [...skips];
    const images: PreparedImage[] = [];
    for (const p of processed) {
      const decision = decisions.get(p.report.path);
      if (!decision || !p.candidate) {
        reports.push(p.report);
      } else if (decision.kept) {
        const c = byPath.get(p.report.path)!;
        reports.push({ ...p.report, entry: decision.entry });
        images.push({ entry: decision.entry, path: c.path, sha256: c.sha256, bytes: c.bytes, file: c.file });
      } else {
        reports.push({
          ...p.report,
          status: "skipped",
          code: decision.code,
          reason: skipReason(decision.code, { of: decision.of, distance: decision.distance }),
        });
      }
    }
    reports.sort((a, b) => comparePaths(a.path, b.path));
    images.sort((a, b) => comparePaths(a.entry, b.entry));

    const keptFaces = images.flatMap((image) => {
      const faced = facedByPath.get(image.path);
      return faced ? [{ entry: image.entry, ...faced }] : [];
    });
    const manifest = faces && keptFaces.length ? manifestOf(keptFaces.map(({ entry, width, height, entryBox }) => ({ entry, width, height, box: entryBox }))) : undefined;
    const faceSummary: FaceSummary | undefined = faces
      ? {
          ...summarizeFaceSet(keptFaces, DATASET_RULES.recommendedMin),
          resolution: faces.resolution,
          framings: {
            "close-up": reports.filter((r) => r.status === "kept" && r.face?.framing === "close-up").length,
            "head-and-shoulders": reports.filter((r) => r.status === "kept" && r.face?.framing === "head-and-shoulders").length,
          },
        }
      : undefined;

    const warnings: string[] = [];
    for (const path of otherPeople) warnings.push(`${path} looks like someone else than the other photos: skipped.`);
    const heic = reports.filter((r) => r.code === "heic").length;
    const verdict = countVerdict(images.length);
    if (verdict.level === "error") {
      for (const r of reports) if (r.status === "skipped") ctx.out.info(`  skipped ${r.path}: ${r.reason}`);
      const noFace = reports.filter((r) => r.code === "no-face").length;
      const hint =
        heic > 0
          ? HEIC_HINT
          : found.length === 0
            ? "The folder has no files to use; point avatar at your photos."
            : faces && noFace > 0 && noFace >= reports.length / 2
              ? "Most photos have no face avatar can find. For drawings, pets or objects, pass --no-face-check (or set AVATAR_FACE_CHECK=0)."
              : "Add more photos of the same person (clear face, varied angles, lighting and backgrounds).";
      throw new AvatarError("BAD_INPUT", `${verdict.message} Folder: ${options.dir}`, { hint, details: { files: reports } });
    }
    if (verdict.message) warnings.push(verdict.message);
    if (heic > 0) warnings.push(`${heic} HEIC/HEIF photo${heic === 1 ? " was" : "s were"} skipped. ${HEIC_HINT}`);
    for (const w of warnings) ctx.out.warn(w);

    if (outDir) await writeOut(outDir, root, images, manifest);

    const summary: PrepareSummary = {
      dir: root,
      files: reports,
      images: images.map(({ file: _file, ...rest }) => rest),
      sha256: datasetHash(
        images.map((i) => i.sha256),
        manifest?.sha256,
      ),
      counts: { scanned: reports.length, kept: images.length, skipped: reports.length - images.length },
      sourceBytes: reports.reduce((sum, r) => sum + (r.status === "kept" ? (r.source?.bytes ?? 0) : 0), 0),
      bytes: images.reduce((sum, i) => sum + i.bytes, 0),
      maxSize,
      minSize,
      warnings,
      ...(outDir ? { out: outDir } : {}),
      ...(faceSummary ? { faces: faceSummary } : {}),
    };
    return { summary, images, ...(manifest ? { manifest } : {}), dispose };
  } catch (error) {
    await dispose();
    throw error;
  }
}

function manifestOf(images: Parameters<typeof facesManifest>[0]): PreparedManifest {
  const data = Buffer.from(facesManifest(images));
  return { entry: FACES_ENTRY, data, sha256: createHash("sha256").update(data).digest("hex"), bytes: data.length };
}

/** `relative` for display: the folder as the user would type it. */
export function displayPath(cwd: string, path: string): string {
  const rel = relative(cwd, path);
  return rel === "" ? "." : rel.startsWith("..") || isAbsolute(rel) ? path : `./${rel}`;
}
