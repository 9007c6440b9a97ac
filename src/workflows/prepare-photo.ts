// prepare, one photo: read it safely, check what it is, decode and normalise it (the whole photo
// fitted inside --max-size, or with face checks the face crop: prepare-faces.ts), spool the JPEG,
// hash it. Returns the file's report and, when usable, a candidate for duplicate selection.
import { createHash } from "node:crypto";
import { rm } from "node:fs/promises";
import { join } from "node:path";
import {
  DATASET_RULES,
  DECODABLE_FORMATS,
  differenceHash,
  dimensionProblem,
  orientedSize,
  SNIFF_BYTES,
  sniffFormat,
  type Candidate,
  type SkipCode,
  type SkipDetails,
  type SniffedFormat,
} from "../core/dataset.ts";
import { AvatarError } from "../core/errors.ts";
import type { PoseMeasure } from "../core/face-checks.ts";
import type { FaceBox } from "../core/faces.ts";
import type { FaceModel } from "./faces/index.ts";
import { prepareFace, type FaceOutcome } from "./prepare-faces.ts";
import { readRegular, skipped, type FileReport, type Found, type Scratches } from "./prepare-files.ts";
import type { MemoryPacer } from "./prepare-memory.ts";

export type Sharp = typeof import("sharp").default;

export interface FaceSettings {
  model: FaceModel;
  resolution: number;
}

export interface Faced {
  embedding: Float32Array;
  pose?: PoseMeasure;
  entryBox: FaceBox;
  width: number;
  height: number;
}

export interface Processed {
  report: FileReport;
  candidate?: Candidate & { file: string; bytes: number };
  faced?: Faced;
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

export async function processOne(
  sharp: Sharp,
  found: Found,
  scratch: Scratches,
  options: { maxSize: number; minSize: number; spool: string; index: number; pacer: MemoryPacer; faces?: FaceSettings },
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
  try {
    if (options.faces) {
      const { model, resolution } = options.faces;
      const outcome = await prepareFace({ sharp, model, data, inputOptions, width, height, hasAlpha: meta.hasAlpha === true, resolution, file });
      if ("skip" in outcome) return { report: skipped(rel, outcome.skip, outcome.details, { format, source, face: outcome.face }) };
      faced = outcome;
      info = outcome.info;
      notes.push(...outcome.notes);
    } else {
      let pipeline = sharp(data, inputOptions)
        .timeout({ seconds: 60 })
        .autoOrient()
        .resize({ width: options.maxSize, height: options.maxSize, fit: "inside", withoutEnlargement: true });
      if (meta.hasAlpha) pipeline = pipeline.flatten({ background: "#ffffff" });
      info = await pipeline
        .toColourspace("srgb")
        .jpeg({ quality: DATASET_RULES.jpegQuality, chromaSubsampling: "4:2:0", mozjpeg: false })
        .toFile(file);
    }
  } catch (error) {
    await rm(file, { force: true });
    if (error instanceof AvatarError) throw error; // the face model failing is no fault of the photo
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
  const report: FileReport = { path: rel, status: "kept", format, source, width: info.width, height: info.height, bytes: jpeg.length, sha256, notes, ...(faced ? { face: faced.face } : {}) };
  return {
    report,
    candidate: { path: rel, sha256, dhash: differenceHash(grid), sourcePixels: width * height, symlink: found.symlink, file, bytes: jpeg.length },
    ...(faced ? { faced: { embedding: faced.embedding, pose: faced.pose, entryBox: faced.entryBox, width: info.width, height: info.height } } : {}),
  };
}
