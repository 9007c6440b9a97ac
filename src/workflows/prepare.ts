// avatar prepare: scan a folder safely, decode and normalise each photo (orientation, size, sRGB
// JPEG without metadata), drop duplicates, and report every file. Normalised JPEGs are spooled to a
// private temporary folder so the zip can be streamed from them without decoding twice; only small
// per-image records stay in memory, whatever the folder size.
import { createHash } from "node:crypto";
import { constants } from "node:fs";
import { copyFile, lstat, mkdir, mkdtemp, open, readdir, realpath, rm, stat } from "node:fs/promises";
import { availableParallelism, tmpdir } from "node:os";
import { isAbsolute, join, relative, resolve, sep } from "node:path";
import type { Context } from "../context.ts";
import {
  comparePaths,
  countVerdict,
  datasetHash,
  DATASET_RULES,
  DECODABLE_FORMATS,
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
import { MemoryPacer } from "./prepare-memory.ts";

export interface PrepareOptions {
  dir: string;
  recursive?: boolean;
  maxSize?: number;
  minSize?: number;
  /** Also write the normalised images here (0001.jpg, …) for inspection. */
  out?: string;
  /** Called with the absolute path of every file whose content is read (also shown with --verbose). */
  onRead?: (path: string) => void;
}

export interface FileReport {
  /** Relative to the folder, '/'-separated. */
  path: string;
  status: "kept" | "skipped";
  /** Set when skipped. */
  code?: SkipCode;
  reason?: string;
  /** Archive entry name when kept. */
  entry?: string;
  format?: string;
  source?: { width: number; height: number; bytes: number };
  /** The normalised JPEG (kept and duplicate photos). */
  width?: number;
  height?: number;
  bytes?: number;
  sha256?: string;
  notes?: string[];
}

export interface PreparedImage {
  entry: string;
  path: string;
  sha256: string;
  bytes: number;
  /** The spooled normalised JPEG. */
  file: string;
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
}

export interface PreparedDataset {
  summary: PrepareSummary;
  images: PreparedImage[];
  /** Removes the spooled images. */
  dispose(): Promise<void>;
}

type Sharp = typeof import("sharp").default;

interface Found {
  rel: string;
  /** The path to read: the file itself, or the in-folder target of a symlink. */
  abs: string;
  symlink?: boolean;
}

interface Processed {
  report: FileReport;
  candidate?: Candidate & { file: string; bytes: number };
}

const interrupted = () => new AvatarError("INTERRUPTED", "Interrupted.");

function skipped(path: string, code: SkipCode, details: SkipDetails = {}, extra: Partial<FileReport> = {}): FileReport {
  return { path, status: "skipped", code, reason: skipReason(code, details), ...extra };
}

function isInside(child: string, parent: string): boolean {
  return child === parent || child.startsWith(parent.endsWith(sep) ? parent : parent + sep);
}

// ---- pass 0: find the files ------------------------------------------------------------------

async function resolveFolder(cwd: string, dir: string): Promise<string> {
  const given = resolve(cwd, dir);
  let info;
  try {
    info = await stat(given);
  } catch (error) {
    const code = (error as NodeJS.ErrnoException).code;
    if (code === "ENOENT" || code === "ENOTDIR") throw badInput(`No such folder: ${dir}`, "Pass the folder that holds your photos, e.g. `avatar prepare ./selfies`.");
    throw badInput(`Cannot open ${dir}: ${(error as Error).message}`);
  }
  if (!info.isDirectory()) throw badInput(`${dir} is not a folder.`, "Pass the folder that holds your photos, not a single file.");
  return realpath(given);
}

async function scan(root: string, recursive: boolean, skips: FileReport[]): Promise<Found[]> {
  const found: Found[] = [];
  const walk = async (dir: string, prefix: string, depth: number): Promise<void> => {
    let entries;
    try {
      entries = await readdir(dir, { withFileTypes: true });
    } catch (error) {
      if (!prefix) throw badInput(`Cannot read the folder ${root}: ${(error as Error).message}`);
      skips.push(skipped(prefix, "unreadable", { message: (error as NodeJS.ErrnoException).code }));
      return;
    }
    entries.sort((a, b) => comparePaths(a.name, b.name));
    for (const entry of entries) {
      const rel = prefix ? `${prefix}/${entry.name}` : entry.name;
      const abs = join(dir, entry.name);
      if (entry.name.startsWith(".")) {
        skips.push(skipped(rel, "hidden"));
      } else if (entry.isDirectory()) {
        if (!recursive) skips.push(skipped(rel, "folder"));
        else if (depth >= DATASET_RULES.maxDepth) skips.push({ ...skipped(rel, "folder"), reason: `sub-folder more than ${DATASET_RULES.maxDepth} levels deep` });
        else await walk(abs, rel, depth + 1);
      } else if (entry.isSymbolicLink()) {
        let target: string;
        try {
          target = await realpath(abs);
        } catch {
          skips.push(skipped(rel, "symlink-broken"));
          continue;
        }
        if (!isInside(target, root)) {
          skips.push(skipped(rel, "symlink-outside"));
          continue;
        }
        const info = await lstat(target).catch(() => undefined);
        if (info?.isFile()) found.push({ rel, abs: target, symlink: true });
        else if (info?.isDirectory()) skips.push(skipped(rel, "symlink-folder"));
        else skips.push(skipped(rel, "not-regular"));
      } else if (entry.isFile()) {
        found.push({ rel, abs });
      } else {
        skips.push(skipped(rel, "not-regular"));
      }
      if (found.length > DATASET_RULES.maxFiles) {
        throw badInput(`More than ${DATASET_RULES.maxFiles} files in ${root}.`, "Point avatar at a folder of 10-20 selfies, not a whole photo library.");
      }
    }
  };
  await walk(root, "", 0);
  return found;
}

// ---- pass 1: read, check, normalise, hash ----------------------------------------------------

/**
 * A per-worker read buffer, reused for every file: photos (often 3-8 MB each) and their normalised
 * copies then never pile up as garbage waiting for the collector, which keeps peak memory flat.
 */
class Scratch {
  #buffer = Buffer.allocUnsafe(0);
  get(size: number): Buffer {
    if (this.#buffer.length < size) this.#buffer = Buffer.allocUnsafe(Math.max(size, Math.ceil(this.#buffer.length * 1.5), 1024 * 1024));
    return this.#buffer.subarray(0, size);
  }
}

interface Scratches {
  input: Scratch;
  output: Scratch;
}

/**
 * Reads a regular file without following a symlink at the last step and without blocking on FIFOs.
 * The returned bytes live in `scratch` and are valid until the next read with it.
 */
async function readRegular(path: string, scratch: Scratch): Promise<{ data: Buffer } | { code: SkipCode; details?: SkipDetails }> {
  const flags = constants.O_RDONLY | (constants.O_NOFOLLOW ?? 0) | (constants.O_NONBLOCK ?? 0);
  let handle;
  try {
    handle = await open(path, flags);
  } catch (error) {
    const code = (error as NodeJS.ErrnoException).code;
    if (code === "ELOOP") return { code: "symlink-broken" };
    return { code: "unreadable", details: { message: code ?? (error as Error).message } };
  }
  try {
    const info = await handle.stat();
    if (!info.isFile()) return { code: "not-regular" };
    if (info.size === 0) return { code: "empty" };
    if (info.size > DATASET_RULES.maxFileBytes) return { code: "file-too-large", details: { bytes: info.size } };
    const data = scratch.get(info.size);
    let offset = 0;
    while (offset < data.length) {
      const { bytesRead } = await handle.read(data, offset, data.length - offset, offset);
      if (bytesRead === 0) break;
      offset += bytesRead;
    }
    if (offset === 0) return { code: "empty" };
    return { data: offset === data.length ? data : data.subarray(0, offset) };
  } catch (error) {
    return { code: "unreadable", details: { message: (error as NodeJS.ErrnoException).code ?? (error as Error).message } };
  } finally {
    await handle.close();
  }
}

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
  options: Required<Pick<PrepareOptions, "maxSize" | "minSize">> & { spool: string; index: number; pacer: MemoryPacer },
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
  if (Math.max(width, height) > options.maxSize) notes.push(`resized from ${width}x${height}`);

  // The normalised JPEG goes straight to the spool file (no large buffer on the JS side), then is
  // read back into the worker's scratch buffer for hashing.
  const file = join(options.spool, `${String(options.index).padStart(6, "0")}.jpg`);
  let info: { width: number; height: number };
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
  const report: FileReport = { path: rel, status: "kept", format, source, width: info.width, height: info.height, bytes: jpeg.length, sha256, notes };
  return {
    report,
    candidate: { path: rel, sha256, dhash: differenceHash(grid), sourcePixels: width * height, symlink: found.symlink, file, bytes: jpeg.length },
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

// ---- --out -----------------------------------------------------------------------------------

async function writeOut(outDir: string, root: string, images: readonly PreparedImage[]): Promise<void> {
  if (outDir === root) throw badInput("--out may not be the photo folder itself.", "Pick an empty folder, e.g. --out ./normalised.");
  let existing: string[] = [];
  try {
    existing = await readdir(outDir);
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code !== "ENOENT") throw badInput(`Cannot use --out ${outDir}: ${(error as Error).message}`);
  }
  const ours = /^\d{4,}\.jpg$/;
  const foreign = existing.filter((name) => !ours.test(name));
  if (foreign.length > 0) {
    throw badInput(`--out folder ${outDir} is not empty (${foreign.slice(0, 3).join(", ")}${foreign.length > 3 ? ", …" : ""}).`, "Pick an empty or new folder; only earlier avatar output (0001.jpg, …) is replaced.");
  }
  await mkdir(outDir, { recursive: true });
  for (const name of existing) await rm(join(outDir, name), { force: true });
  for (const image of images) await copyFile(image.file, join(outDir, image.entry));
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

  const { default: sharp } = await import("sharp");
  sharp.cache(false);
  const spool = await mkdtemp(join(tmpdir(), "avatar-prepare-"));
  const dispose = () => rm(spool, { recursive: true, force: true });
  try {
    const progress = found.length > 0 ? ctx.out.progress("Preparing photos", found.length, "steps") : undefined;
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
        return processOne(sharp, item, scratch, { maxSize, minSize, spool, index, pacer });
      },
      () => progress?.update(++done),
    );
    progress?.done();

    const candidates = processed.flatMap((p) => (p.candidate ? [p.candidate] : []));
    const byPath = new Map(candidates.map((c) => [c.path, c]));
    const decisions = new Map(selectImages(candidates).map((d) => [d.path, d]));
    const reports = [...skips];
    const images: PreparedImage[] = [];
    for (const p of processed) {
      const decision = decisions.get(p.report.path);
      if (!decision) {
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

    const warnings: string[] = [];
    const heic = reports.filter((r) => r.code === "heic").length;
    const verdict = countVerdict(images.length);
    if (verdict.level === "error") {
      for (const r of reports) if (r.status === "skipped") ctx.out.info(`  skipped ${r.path}: ${r.reason}`);
      throw badInput(`${verdict.message} Folder: ${options.dir}`, heic > 0 ? HEIC_HINT : found.length === 0 ? "The folder has no files to use; point avatar at your photos." : "Add more photos of the same person (clear face, varied angles, lighting and backgrounds).");
    }
    if (verdict.message) warnings.push(verdict.message);
    if (heic > 0) warnings.push(`${heic} HEIC/HEIF photo${heic === 1 ? " was" : "s were"} skipped. ${HEIC_HINT}`);
    for (const w of warnings) ctx.out.warn(w);

    if (outDir) await writeOut(outDir, root, images);

    const summary: PrepareSummary = {
      dir: root,
      files: reports,
      images: images.map(({ file: _file, ...rest }) => rest),
      sha256: datasetHash(images.map((i) => i.sha256)),
      counts: { scanned: reports.length, kept: images.length, skipped: reports.length - images.length },
      sourceBytes: reports.reduce((sum, r) => sum + (r.status === "kept" ? (r.source?.bytes ?? 0) : 0), 0),
      bytes: images.reduce((sum, i) => sum + i.bytes, 0),
      maxSize,
      minSize,
      warnings,
      ...(outDir ? { out: outDir } : {}),
    };
    return { summary, images, dispose };
  } catch (error) {
    await dispose();
    throw error;
  }
}

/** `relative` for display: the folder as the user would type it. */
export function displayPath(cwd: string, path: string): string {
  const rel = relative(cwd, path);
  return rel === "" ? "." : rel.startsWith("..") || isAbsolute(rel) ? path : `./${rel}`;
}
