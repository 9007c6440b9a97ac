// Test photos built with sharp (and a few hand-made byte strings for hostile cases). Each seed
// gives a different smooth colour field plus grain, so photos look photo-like to the JPEG encoder
// (12 MP ≈ 4 MB) and their perceptual hashes differ; the same seed always gives the same pixels.
import { writeFileSync } from "node:fs";
import { join } from "node:path";
import { crc32, deflateSync } from "node:zlib";
import sharp from "sharp";

function xorshift(seed: number): () => number {
  let s = (Math.imul(seed + 1, 2654435761) >>> 0) || 1;
  return () => {
    s ^= s << 13;
    s >>>= 0;
    s ^= s >>> 17;
    s ^= s << 5;
    s >>>= 0;
    return s / 4294967296;
  };
}

/** Raw RGB pixels: a bilinear field over a coarse random grid, plus per-pixel grain. */
export function photoPixels(seed: number, width: number, height: number, grain = 16): Buffer {
  const rand = xorshift(seed);
  const gw = 9;
  const gh = 7;
  const grid = new Float32Array(gw * gh * 3);
  for (let i = 0; i < grid.length; i++) grid[i] = rand() * 255;
  const out = Buffer.allocUnsafe(width * height * 3);
  let s = (Math.imul(seed + 7, 97) >>> 0) || 7;
  const sx = (gw - 1) / Math.max(1, width - 1);
  const sy = (gh - 1) / Math.max(1, height - 1);
  for (let y = 0; y < height; y++) {
    const fy = y * sy;
    const y0 = Math.min(gh - 2, Math.floor(fy));
    const ty = fy - y0;
    for (let x = 0; x < width; x++) {
      const fx = x * sx;
      const x0 = Math.min(gw - 2, Math.floor(fx));
      const tx = fx - x0;
      s ^= s << 13;
      s >>>= 0;
      s ^= s >>> 17;
      s ^= s << 5;
      s >>>= 0;
      const n = grain ? (s % (2 * grain)) - grain : 0;
      const o = (y * width + x) * 3;
      for (let c = 0; c < 3; c++) {
        const a = grid[(y0 * gw + x0) * 3 + c]!;
        const b = grid[(y0 * gw + x0 + 1) * 3 + c]!;
        const d = grid[((y0 + 1) * gw + x0) * 3 + c]!;
        const e = grid[((y0 + 1) * gw + x0 + 1) * 3 + c]!;
        const v = (a * (1 - tx) + b * tx) * (1 - ty) + (d * (1 - tx) + e * tx) * ty + n;
        out[o + c] = v < 0 ? 0 : v > 255 ? 255 : v;
      }
    }
  }
  return out;
}

export function photo(seed: number, width: number, height: number, grain = 16): sharp.Sharp {
  return sharp(photoPixels(seed, width, height, grain), { raw: { width, height, channels: 3 } });
}

/** A smooth random photo made by sharp alone (fast; no grain): for tests that need hundreds of files. */
export function quickPhoto(seed: number, width: number, height: number): sharp.Sharp {
  const rand = xorshift(seed);
  const grid = Buffer.from(Array.from({ length: 9 * 7 * 3 }, () => Math.floor(rand() * 256)));
  return sharp(grid, { raw: { width: 9, height: 7, channels: 3 } }).resize(width, height, { fit: "fill", kernel: "cubic" });
}

export interface JpegOptions {
  quality?: number;
  /** EXIF orientation tag (1-8) written into the file; pixels are stored as given. */
  orientation?: number;
  /** Camera make/model/serial and a GPS position, for "metadata is stripped" checks. */
  privateExif?: boolean;
}

export const PRIVATE_EXIF = {
  IFD0: { Make: "AvatarTestCam", Model: "Secret Model 9", Artist: "Jane Private" },
  IFD2: { BodySerialNumber: "SN-0042-PRIVATE" },
  IFD3: { GPSLatitudeRef: "N", GPSLatitude: "48/1 51/1 24/1", GPSLongitudeRef: "E", GPSLongitude: "2/1 21/1 3/1" },
};

export async function jpeg(seed: number, width: number, height: number, options: JpegOptions = {}): Promise<Buffer> {
  let image = photo(seed, width, height);
  if (options.privateExif) image = image.withExif(PRIVATE_EXIF);
  if (options.orientation) image = image.withMetadata({ orientation: options.orientation });
  return image.jpeg({ quality: options.quality ?? 90 }).toBuffer();
}

/** The same photo stored sideways with EXIF orientation 6 (“rotate 90° clockwise to view”). */
export async function sidewaysJpeg(seed: number, width: number, height: number): Promise<Buffer> {
  const upright = await photo(seed, width, height).raw().toBuffer();
  // Stored pixels are the upright photo turned 90° counter-clockwise; orientation 6 turns them back.
  const stored = await sharp(upright, { raw: { width, height, channels: 3 } }).rotate(270).raw().toBuffer({ resolveWithObject: true });
  return sharp(stored.data, { raw: { width: stored.info.width, height: stored.info.height, channels: 3 } })
    .withMetadata({ orientation: 6 })
    .jpeg({ quality: 90 })
    .toBuffer();
}

export async function png(seed: number, width: number, height: number, options: { sixteenBit?: boolean; alpha?: boolean } = {}): Promise<Buffer> {
  let image = photo(seed, width, height);
  if (options.alpha) image = image.ensureAlpha(0.5);
  if (options.sixteenBit) image = image.toColourspace("rgb16");
  return image.png({ compressionLevel: 1 }).toBuffer();
}

export async function webp(seed: number, width: number, height: number): Promise<Buffer> {
  return photo(seed, width, height).webp({ quality: 85 }).toBuffer();
}

export async function cmykJpeg(seed: number, width: number, height: number): Promise<Buffer> {
  return photo(seed, width, height).toColourspace("cmyk").jpeg({ quality: 90 }).toBuffer();
}

export async function tiff(seed: number, width: number, height: number): Promise<Buffer> {
  return photo(seed, width, height).tiff({ compression: "lzw" }).toBuffer();
}

/** An animation with `frames` different frames. */
export async function animated(format: "gif" | "webp", seed: number, width: number, height: number, frames = 3): Promise<Buffer> {
  const pages = Buffer.concat(Array.from({ length: frames }, (_, i) => photoPixels(seed + i * 1000, width, height, 0)));
  const image = sharp(pages, { raw: { width, height: height * frames, channels: 3, pageHeight: height } });
  return format === "gif" ? image.gif({ delay: 100, loop: 0 }).toBuffer() : image.webp({ quality: 80, delay: 100, loop: 0 }).toBuffer();
}

function pngChunk(type: string, data: Buffer): Buffer {
  const length = Buffer.alloc(4);
  length.writeUInt32BE(data.length);
  const body = Buffer.concat([Buffer.from(type, "latin1"), data]);
  const crc = Buffer.alloc(4);
  crc.writeUInt32BE(crc32(body) >>> 0);
  return Buffer.concat([length, body, crc]);
}

/** A valid-looking PNG whose header claims width x height (a decompression bomb's calling card). */
export function bombPng(width: number, height: number): Buffer {
  const ihdr = Buffer.alloc(13);
  ihdr.writeUInt32BE(width, 0);
  ihdr.writeUInt32BE(height, 4);
  ihdr[8] = 8; // bit depth
  ihdr[9] = 2; // RGB
  // A tiny IDAT of zeros: real bombs compress gigapixels of zeros into kilobytes.
  const idat = deflateSync(Buffer.alloc(64 * 1024));
  return Buffer.concat([Buffer.from("\x89PNG\r\n\x1a\n", "latin1"), pngChunk("IHDR", ihdr), pngChunk("IDAT", idat), pngChunk("IEND", Buffer.alloc(0))]);
}

/** The start of an iPhone HEIC file (ftyp box, brand heic) followed by filler. */
export function heicFile(): Buffer {
  const ftyp = Buffer.concat([Buffer.from([0, 0, 0, 0x18]), Buffer.from("ftypheic", "latin1"), Buffer.from([0, 0, 0, 0]), Buffer.from("mif1heic", "latin1")]);
  return Buffer.concat([ftyp, Buffer.alloc(2048, 0x42)]);
}

/** Writes name → bytes into dir. */
export function writeFiles(dir: string, files: Record<string, Buffer | string>): void {
  for (const [name, content] of Object.entries(files)) writeFileSync(join(dir, name), content);
}

/** `count` distinct photo-like JPEGs named photo-01.jpg … in dir. */
export async function writePhotos(dir: string, count: number, options: { width?: number; height?: number; seed?: number; prefix?: string; quality?: number } = {}): Promise<string[]> {
  const names: string[] = [];
  for (let i = 0; i < count; i++) {
    const name = `${options.prefix ?? "photo-"}${String(i + 1).padStart(2, "0")}.jpg`;
    writeFileSync(join(dir, name), await jpeg((options.seed ?? 1) + i, options.width ?? 800, options.height ?? 600, { quality: options.quality }));
    names.push(name);
  }
  return names;
}
