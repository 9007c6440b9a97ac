// Real photos for face tests: the group shots that ship inside @vladmandic/face-api (demo/),
// and single-face photos cut from them. Never the network.
import { createRequire } from "node:module";
import { dirname, join } from "node:path";
import sharp from "sharp";

const require = createRequire(import.meta.url);
export const faceSamplesDir = join(dirname(require.resolve("@vladmandic/face-api/package.json")), "demo");

/** sample1..6.jpg: 1920 px wide group photos. People per photo (checked by eye). */
export const GROUP_PHOTOS = { 1: 3, 2: 3, 3: 3, 4: 4, 5: 5, 6: 4 } as const;
export const samplePhoto = (n: keyof typeof GROUP_PHOTOS) => join(faceSamplesDir, `sample${n}.jpg`);

/** A region of a sample photo (source pixels), margin included. */
export interface Region {
  sample: keyof typeof GROUP_PHOTOS;
  left: number;
  top: number;
  width: number;
  height: number;
}

/** Single people in the sample photos: squares ~2.4x the face, centred on it (source pixels). */
export const PEOPLE = {
  a: { sample: 1, left: 1290, top: 32, width: 576, height: 576 }, // sample1, right
  b: { sample: 3, left: 385, top: 165, width: 600, height: 600 }, // sample3, left
  c: { sample: 6, left: 1313, top: 130, width: 560, height: 560 }, // sample6, right
  d: { sample: 4, left: 508, top: 0, width: 500, height: 480 }, // sample4, second from left
} satisfies Record<string, Region>;

/** Two people side by side, faces of comparable size (sample1, left and middle). */
export const TWO_PEOPLE: Region = { sample: 1, left: 300, top: 250, width: 850, height: 550 };

export async function cropRegion(region: Region): Promise<sharp.Sharp> {
  return sharp(samplePhoto(region.sample)).extract({ left: region.left, top: region.top, width: region.width, height: region.height });
}

export async function rgbOf(input: sharp.Sharp | string | Buffer): Promise<{ data: Uint8Array; width: number; height: number }> {
  const image = typeof input === "string" || Buffer.isBuffer(input) ? sharp(input) : input;
  const { data, info } = await image.removeAlpha().toColourspace("srgb").raw().toBuffer({ resolveWithObject: true });
  return { data: new Uint8Array(data.buffer, data.byteOffset, data.length), width: info.width, height: info.height };
}
