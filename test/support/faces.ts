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

/**
 * Photos of person a that differ like real photos do (head tilt, mirror, light, framing), so
 * neither the duplicate check nor the near-duplicate check (dHash on the crop) merges them.
 */
export async function personPhotos(region: Region = PEOPLE.a): Promise<Buffer[]> {
  const base = await (await cropRegion(region)).png().toBuffer();
  const grow = async (image: sharp.Sharp) => image.resize(region.width * 2).jpeg({ quality: 92 }).toBuffer();
  const rotated = (angle: number) => sharp(base).rotate(angle, { background: "#808080" });
  return Promise.all([
    grow(sharp(base)),
    grow(sharp(base).flop()),
    grow(sharp(await rotated(9).toBuffer())),
    grow(sharp(await rotated(-9).toBuffer())),
    grow(sharp(await rotated(9).toBuffer()).flop()),
    grow(sharp(await rotated(-9).toBuffer()).flop().modulate({ brightness: 1.15 })),
  ]);
}

/** Random RGB noise as a JPEG: no face in it. */
export async function noisePhoto(width = 1200, height = 1200, seed = 11): Promise<Buffer> {
  const data = Buffer.alloc(width * height * 3);
  let state = seed;
  for (let i = 0; i < data.length; i++) data[i] = (state = (state * 1103515245 + 12345) & 0x7fffffff) >> 23;
  return sharp(data, { raw: { width, height, channels: 3 } }).jpeg().toBuffer();
}

/** A region scaled up 2x (so its faces are big enough for a 512 px base) as a JPEG. */
export async function regionPhoto(region: Region, factor = 2): Promise<Buffer> {
  return (await cropRegion(region)).resize(Math.round(region.width * factor)).jpeg({ quality: 92 }).toBuffer();
}
