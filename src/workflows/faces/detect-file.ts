// Faces in a photo on disk: decode with sharp (EXIF orientation applied), downscale for speed (the
// detector looks at 416 px anyway), detect. Boxes are in the pixels of the decoded, downscaled image.
import { orientedSize } from "../../core/dataset.ts";
import type { Face } from "../../core/faces.ts";
import { loadFaceModel, type DetectOptions } from "./model.ts";

export interface FileFaces {
  /** The decoded (oriented, downscaled) image the boxes refer to. */
  width: number;
  height: number;
  /** The photo's own oriented size. */
  source: { width: number; height: number };
  faces: Face[];
}

export async function detectFile(path: string | Buffer, maxSide = 1024, options?: DetectOptions): Promise<FileFaces> {
  const [{ default: sharp }, model] = await Promise.all([import("sharp"), loadFaceModel()]);
  const image = sharp(path, { failOn: "none" }).rotate();
  const meta = await image.metadata();
  const source = orientedSize(meta.width ?? 0, meta.height ?? 0, meta.orientation);
  const { data, info } = await image
    .resize(maxSide, maxSide, { fit: "inside", withoutEnlargement: true })
    .removeAlpha()
    .toColourspace("srgb")
    .raw()
    .toBuffer({ resolveWithObject: true });
  const pixels = new Uint8Array(data.buffer, data.byteOffset, data.length);
  const faces = await model.detect({ data: pixels, width: info.width, height: info.height }, options);
  return { width: info.width, height: info.height, source, faces };
}
