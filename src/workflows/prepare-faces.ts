// prepare's face work for one photo: find the faces on a small decoded copy, apply the per-photo
// rules (no-face, multi-face, face-too-small), cut the crop from the full-resolution photo at the
// base model's resolution, measure the face on it (sharpness, exposure; blurry) and write the JPEG.
// The set-level rule (different-person) runs once all photos are in: see identityOutliers.
import { createHash } from "node:crypto";
import { chooseCrop, minFaceSide, framingRect, type Crop, type Framing } from "../core/face-crops.ts";
import { exposureNote, FACE_RULES, faceCountProblem, laplacianVariance, meanValue, poseOf, type PoseMeasure } from "../core/face-checks.ts";
import type { FaceBox } from "../core/faces.ts";
import { DATASET_RULES, type SkipCode, type SkipDetails } from "../core/dataset.ts";
import { AvatarError } from "../core/errors.ts";
import type { FaceModel } from "./faces/index.ts";

type Sharp = typeof import("sharp").default;
type SharpInput = Parameters<Sharp>[1];

/** The long side of the copy the detector sees: it looks at 224-416 px anyway; the embedding wants faces of ~100 px. */
export const DETECT_SIDE = 640;

/** What prepare reports about a photo's face (--json: files[].face). */
export interface FaceReport {
  /** Faces found. */
  faces: number;
  /** The largest face in the photo's own (upright) pixels. */
  box?: FaceBox;
  /** Face side over the photo's short side. */
  size?: number;
  /** Variance of the Laplacian on the face at 128 px (see FACE_RULES.minSharpness). */
  sharpness?: number;
  /** Mean luminance of the face, 0-255. */
  exposure?: number;
  framing?: Framing;
  /** The square cut from the photo (upright pixels). */
  crop?: FaceBox;
  /** The face box in the stored image (what faces.json records). */
  entryBox?: FaceBox;
  /** Similarity to the set's consensus face (0-1; see core/faces). */
  similarity?: number;
}

export type FaceOutcome =
  | { skip: SkipCode; details?: SkipDetails; face: FaceReport }
  | { face: FaceReport; embedding: Float32Array; pose?: PoseMeasure; info: { width: number; height: number }; entryBox: FaceBox; notes: string[] };

export interface FaceJob {
  sharp: Sharp;
  /** Awaited once this photo's small copy is decoded: the model loads while the first photos decode. */
  model: Promise<FaceModel>;
  data: Buffer;
  inputOptions: SharpInput;
  /** Upright size of the photo. */
  width: number;
  height: number;
  hasAlpha: boolean;
  resolution: number;
  /** Where the crop's JPEG goes. */
  file: string;
}

/** Detect, check, crop, measure and write one photo. */
export async function prepareFace(job: FaceJob): Promise<FaceOutcome> {
  const { sharp, data, inputOptions, width, height, resolution } = job;
  let small = sharp(data, inputOptions).autoOrient().resize(DETECT_SIDE, DETECT_SIDE, { fit: "inside", withoutEnlargement: true });
  if (job.hasAlpha) small = small.flatten({ background: "#ffffff" });
  const decoded = await small.removeAlpha().toColourspace("srgb").raw().toBuffer({ resolveWithObject: true });
  const scale = width / decoded.info.width;
  const model = await job.model;
  const faces = await model
    .detect({ data: new Uint8Array(decoded.data.buffer, decoded.data.byteOffset, decoded.data.length), width: decoded.info.width, height: decoded.info.height }, { detector: "auto" })
    .catch((error: unknown) => {
      throw new AvatarError("INTERNAL", `Face detection failed: ${error instanceof Error ? error.message : String(error)}`, {
        cause: error,
        hint: "Run again with --verbose and report it; --no-face-check prepares the photos without face checks.",
      });
    });
  const count = faceCountProblem(faces);
  if (count) return { skip: count, details: { faces: faces.length }, face: { faces: faces.length } };

  const face = faces[0]!;
  const box = face.box.map((v, i) => Math.min(Math.round(v * scale), i % 2 ? height : width)) as FaceBox;
  const side = Math.max(box[2] - box[0], box[3] - box[1]);
  const report: FaceReport = { faces: faces.length, box, size: round(side / Math.min(width, height), 3) };
  // Half the photos of a set get each framing where both fit; which half comes from the content (its
  // first 64 kB and length), never from the file name, so renaming changes nothing.
  const prefer: Framing = createHash("sha256").update(data.subarray(0, 65536)).update(String(data.length)).digest()[0]! & 1 ? "head-and-shoulders" : "close-up";
  const crop = chooseCrop(box, width, height, resolution, prefer);
  if (!crop) {
    const widest = framingRect(box, width, height, "head-and-shoulders");
    return { skip: "face-too-small", details: { resolution, cropSide: widest[2] - widest[0], faceSide: minFaceSide(resolution), width, height }, face: report };
  }
  report.framing = crop.framing;
  report.crop = crop.rect;

  const pixels = await cropPixels(job, crop);
  const measured = await measureFace(sharp, pixels, crop);
  report.sharpness = round(measured.sharpness, 1);
  report.exposure = Math.round(measured.exposure);
  if (measured.sharpness < FACE_RULES.minSharpness) {
    return { skip: "blurry", details: { sharpness: measured.sharpness, minSharpness: FACE_RULES.minSharpness }, face: report };
  }
  const info = await sharp(pixels, { raw: { width: crop.outputSide, height: crop.outputSide, channels: 3 } })
    .jpeg({ quality: DATASET_RULES.jpegQuality, chromaSubsampling: "4:2:0", mozjpeg: false })
    .toFile(job.file);
  report.entryBox = crop.faceInOutput;
  const notes = [`${crop.framing} crop ${crop.rect[2] - crop.rect[0]} px at (${crop.rect[0]}, ${crop.rect[1]})`];
  const exposure = exposureNote(measured.exposure);
  if (exposure) notes.push(exposure);
  const pose = poseOf(face.landmarks);
  return { face: report, embedding: face.embedding, ...(pose ? { pose } : {}), info, entryBox: crop.faceInOutput, notes };
}

/**
 * The crop at the output side, raw RGB. The whole photo is scaled first and the square cut after,
 * so the JPEG decoder can shrink while decoding (a 12-MP photo is never decoded at full size).
 */
async function cropPixels(job: FaceJob, crop: Crop): Promise<Buffer> {
  const [x0, y0, x1] = crop.rect;
  const out = crop.outputSide;
  const scale = out / (x1 - x0);
  const width = Math.max(out, Math.round(job.width * scale));
  const height = Math.max(out, Math.round(job.height * scale));
  let pipeline = job.sharp(job.data, job.inputOptions)
    .timeout({ seconds: 60 })
    .autoOrient()
    .resize(width, height, { fit: "fill" })
    .extract({ left: Math.min(Math.round(x0 * scale), width - out), top: Math.min(Math.round(y0 * scale), height - out), width: out, height: out });
  if (job.hasAlpha) pipeline = pipeline.flatten({ background: "#ffffff" });
  return pipeline.removeAlpha().toColourspace("srgb").raw().toBuffer();
}

/** Sharpness and exposure of the face, resampled to a fixed size so photos compare. */
async function measureFace(sharp: Sharp, pixels: Buffer, crop: Crop): Promise<{ sharpness: number; exposure: number }> {
  const [x0, y0, x1, y1] = crop.faceInOutput;
  const n = FACE_RULES.sharpnessSide;
  const grey = await sharp(pixels, { raw: { width: crop.outputSide, height: crop.outputSide, channels: 3 } })
    .extract({ left: x0, top: y0, width: Math.max(1, x1 - x0), height: Math.max(1, y1 - y0) })
    .resize(n, n, { fit: "fill" })
    .greyscale()
    .raw()
    .toBuffer();
  const values = new Uint8Array(grey.buffer, grey.byteOffset, grey.length);
  return { sharpness: laplacianVariance(values, n, n), exposure: meanValue(values) };
}

const round = (value: number, digits: number) => Number(value.toFixed(digits));
