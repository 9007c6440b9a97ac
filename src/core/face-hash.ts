// Perceptual hashes of face regions, to tell a near-copy of a training photo from a likeness (see
// core/checkpoint-pick.ts). Pure: the pixels come decoded (RGB, row-major) from the caller. The hash
// and its distance are the dataset's (core/dataset.ts: differenceHash, hammingDistance), on a 9×8 grid.
import { differenceHash } from "./dataset.ts";

/** A face box [x0, y0, x1, y1] in pixels. */
export type Box = readonly [number, number, number, number];

/**
 * The face region (the box grown by `margin` of its size on every side, clamped to the image) as a
 * 9×8 grayscale thumbnail by area averaging: what differenceHash reads. Framing differences of a
 * few pixels between two detections of the same face barely move a 9×8 average.
 */
export function faceThumbnail(rgb: Uint8Array, width: number, height: number, box: Box, margin = 0.15): Uint8Array {
  const [bx0, by0, bx1, by1] = box;
  const grow = margin * Math.max(bx1 - bx0, by1 - by0);
  const x0 = Math.max(0, Math.floor(bx0 - grow));
  const y0 = Math.max(0, Math.floor(by0 - grow));
  const x1 = Math.min(width, Math.ceil(bx1 + grow));
  const y1 = Math.min(height, Math.ceil(by1 + grow));
  if (x1 - x0 < 1 || y1 - y0 < 1) throw new RangeError(`face box ${box.join(",")} lies outside a ${width}×${height} image`);
  const out = new Uint8Array(72);
  for (let ty = 0; ty < 8; ty++) {
    const ya = y0 + Math.floor(((y1 - y0) * ty) / 8);
    const yb = Math.max(ya + 1, y0 + Math.floor(((y1 - y0) * (ty + 1)) / 8));
    for (let tx = 0; tx < 9; tx++) {
      const xa = x0 + Math.floor(((x1 - x0) * tx) / 9);
      const xb = Math.max(xa + 1, x0 + Math.floor(((x1 - x0) * (tx + 1)) / 9));
      let sum = 0;
      for (let y = ya; y < yb; y++) {
        for (let x = xa; x < xb; x++) {
          const i = (y * width + x) * 3;
          sum += 0.299 * rgb[i]! + 0.587 * rgb[i + 1]! + 0.114 * rgb[i + 2]!;
        }
      }
      out[ty * 9 + tx] = Math.round(sum / ((yb - ya) * (xb - xa)));
    }
  }
  return out;
}

/** 64-bit difference hash (core/dataset.ts) of a face region: what near-copy checks compare. */
export function faceHash(rgb: Uint8Array, width: number, height: number, box: Box): string {
  return differenceHash(faceThumbnail(rgb, width, height, box), 9, 8);
}
