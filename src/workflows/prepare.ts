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
import { comparePaths, countVerdict, datasetHash, DATASET_RULES, HEIC_HINT, selectImages, skipReason, validateSizes } from "../core/dataset.ts";
import { AvatarError, badInput } from "../core/errors.ts";
import { identityOutliers, summarizeFaceSet, type FaceSetSummary } from "../core/face-checks.ts";
import { FACES_ENTRY, facesManifest } from "../core/face-manifest.ts";
import { isInside, resolveFolder, scan, Scratch, writeOut, type FileReport, type Scratches } from "./prepare-files.ts";
import { MemoryPacer } from "./prepare-memory.ts";
import { processOne, type FaceSettings, type Processed } from "./prepare-photo.ts";

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

const interrupted = () => new AvatarError("INTERRUPTED", "Interrupted.");

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

  // The face model loads (~0.4 s) in a worker thread while sharp and the first photos decode; photos
  // then queue for it one at a time, while the main thread crops and writes the others.
  const faceModel = options.faceCheck ? import("./faces/index.ts").then((faces) => faces.startFaceModel()) : undefined;
  const closeFaceModel = () => faceModel?.then((handle) => handle.close()).catch(() => undefined);
  const loadingModel = faceModel
    ? faceModel
        .then((handle) => handle.model)
        .catch((error: unknown) => {
          throw new AvatarError("ENVIRONMENT", `Could not load the face model: ${error instanceof Error ? error.message : String(error)}`, {
            cause: error,
            hint: "Reinstall avatar (its face model ships in @vladmandic/face-api and @tensorflow/tfjs-backend-wasm), or pass --no-face-check.",
          });
        })
    : undefined;
  loadingModel?.catch(() => undefined); // awaited by every photo; not unhandled before the first one
  const { default: sharp } = await import("sharp");
  sharp.cache(false);
  const faces: FaceSettings | undefined = loadingModel ? { model: loadingModel, resolution: options.baseResolution ?? 1024 } : undefined;
  const spool = await mkdtemp(join(tmpdir(), "avatar-prepare-"));
  const dispose = () => rm(spool, { recursive: true, force: true });
  try {
    const progress = found.length > 0 ? ctx.out.progress(faces ? "Preparing photos (checking faces)" : "Preparing photos", found.length, "steps") : undefined;
    let done = 0;
    // With face checks a photo spends part of its turn queued for the detector (a worker thread, not
    // a core of this pool): two more photos in flight keep that queue from running dry.
    const workers = Math.max(1, Math.min(4, availableParallelism())) + (faces ? 2 : 0);
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
    ).finally(closeFaceModel);
    progress?.done();

    const otherPeople = faces ? skipOtherPeople(processed) : [];
    const candidates = processed.flatMap((p) => (p.candidate ? [p.candidate] : []));
    const facedByPath = new Map(processed.flatMap((p) => (p.candidate && p.faced ? [[p.candidate.path, p.faced] as const] : [])));
    const decisions = new Map(selectImages(candidates).map((d) => [d.path, d]));
    const reports = [...skips];
    const images: PreparedImage[] = [];
    for (const p of processed) {
      const c = p.candidate;
      const decision = c && decisions.get(c.path);
      if (!c || !decision) {
        reports.push(p.report);
      } else if (decision.kept) {
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
