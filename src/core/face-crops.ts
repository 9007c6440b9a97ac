// Where prepare cuts a photo: a square centred on the face, in one of two framings, never smaller
// than the base model's resolution (a crop is only ever scaled down). Pure geometry, source pixels.
import type { FaceBox } from "./faces.ts";

export type Framing = "close-up" | "head-and-shoulders";

/** Crop side as a multiple of the face's side, and how far below the face centre the crop centre sits. */
export const FRAMINGS: Readonly<Record<Framing, { scale: number; drop: number }>> = {
  // The face fills ~45% of the frame: eyes, mouth and skin texture get the most pixels.
  "close-up": { scale: 2.2, drop: 0.1 },
  // Hair, neck and shoulders in view: what most prompts ask for ("portrait of …").
  "head-and-shoulders": { scale: 3.5, drop: 0.55 },
};

export interface Crop {
  framing: Framing;
  /** Square in source pixels: [x0, y0, x1, y1), inside the photo. */
  rect: FaceBox;
  /** The face box relative to the output image of side `outputSide`. */
  faceInOutput: FaceBox;
  outputSide: number;
}

const faceSide = (box: FaceBox) => Math.max(box[2] - box[0], box[3] - box[1]);

/** The square for a framing: centred on the face (dropped towards the shoulders), clamped inside the photo. */
export function framingRect(face: FaceBox, width: number, height: number, framing: Framing): FaceBox {
  const { scale, drop } = FRAMINGS[framing];
  const side = Math.min(Math.round(faceSide(face) * scale), width, height);
  const cx = (face[0] + face[2]) / 2;
  const cy = (face[1] + face[3]) / 2 + drop * faceSide(face);
  const x0 = Math.round(Math.min(Math.max(cx - side / 2, 0), width - side));
  const y0 = Math.round(Math.min(Math.max(cy - side / 2, 0), height - side));
  return [x0, y0, x0 + side, y0 + side];
}

/**
 * The crop for a face, or undefined when even the widest framing has fewer pixels than the base
 * resolution (it would have to be upscaled: `face-too-small`). `prefer` picks the framing when the
 * photo allows both; a close-up needs a bigger face than a head-and-shoulders shot.
 */
export function chooseCrop(face: FaceBox, width: number, height: number, resolution: number, prefer: Framing): Crop | undefined {
  const options = (prefer === "close-up" ? ["close-up", "head-and-shoulders"] : ["head-and-shoulders", "close-up"]) as Framing[];
  for (const framing of options) {
    const rect = framingRect(face, width, height, framing);
    const side = rect[2] - rect[0];
    if (side < resolution) continue;
    const scale = resolution / side;
    const map = (value: number, origin: number) => Math.min(resolution, Math.max(0, Math.round((value - origin) * scale)));
    const faceInOutput: FaceBox = [map(face[0], rect[0]), map(face[1], rect[1]), map(face[2], rect[0]), map(face[3], rect[1])];
    return { framing, rect, faceInOutput, outputSide: resolution };
  }
  return undefined;
}

/** The smallest face side (source pixels) whose widest crop needs no upscaling (in a photo large enough). */
export function minFaceSide(resolution: number): number {
  return Math.ceil(resolution / FRAMINGS["head-and-shoulders"].scale);
}
