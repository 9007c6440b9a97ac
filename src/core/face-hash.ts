// Perceptual hashes of face regions, to tell a near-copy of a training photo from a likeness (see
// core/checkpoint-pick.ts). Pure: the pixels come decoded (RGB, row-major) from the caller.
import { hammingDistance } from "./dataset.ts";
import type { FaceBox } from "./faces.ts";

/** A face box [x0, y0, x1, y1] in pixels (read-only). */
export type Box = Readonly<FaceBox>;

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

/** 64-bit difference hash of a 9×8 grayscale thumbnail (row-major, 72 bytes), as 16 hex digits. */
export function differenceHash(gray: Uint8Array | readonly number[]): string {
  if (gray.length !== 72) throw new RangeError(`differenceHash needs 9×8 = 72 pixels, got ${gray.length}`);
  let bits = 0n;
  for (let y = 0; y < 8; y++) {
    for (let x = 0; x < 8; x++) bits = (bits << 1n) | (gray[y * 9 + x]! > gray[y * 9 + x + 1]! ? 1n : 0n);
  }
  return bits.toString(16).padStart(16, "0");
}

/** Bits that differ between two hashes from differenceHash (core/dataset's Hamming distance). */
export const hashDistance = (a: string, b: string): number => hammingDistance(a, b);
