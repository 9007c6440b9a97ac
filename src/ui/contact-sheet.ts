// A contact sheet: every generated image in one grid, so a person sees a batch at a glance.
import type { default as Sharp } from "sharp";

/** One image fitted (letterboxed) into a square tile. */
const tileOf = (sharp: typeof Sharp, file: string, tile: number) => sharp(file).resize(tile, tile, { fit: "contain", background: "#202020" }).jpeg({ quality: 88 }).toBuffer();

export async function writeContactSheet(images: readonly string[], outFile: string, options: { tile?: number; columns?: number } = {}): Promise<string> {
  const { default: sharp } = await import("sharp");
  const tile = options.tile ?? 256;
  const gap = 8;
  const columns = Math.max(1, Math.min(options.columns ?? 4, images.length));
  const rows = Math.ceil(images.length / columns);
  const tiles = await Promise.all(images.map((file) => tileOf(sharp, file, tile)));
  await sharp({
    create: { width: columns * tile + (columns + 1) * gap, height: rows * tile + (rows + 1) * gap, channels: 3, background: "#111111" },
  })
    .composite(tiles.map((input, i) => ({ input, left: gap + (i % columns) * (tile + gap), top: gap + Math.floor(i / columns) * (tile + gap) })))
    .jpeg({ quality: 88 })
    .toFile(outFile);
  return outFile;
}

const escapeXml = (text: string) => text.replace(/&/g, "&amp;").replace(/</g, "&lt;").replace(/>/g, "&gt;");

/**
 * A contact sheet of labelled rows (e.g. "base" above "avatar" for the same prompts and seeds): each row
 * starts with its label, then its images left to right, so a column compares like with like.
 */
export async function writeLabelledContactSheet(rows: readonly { label: string; images: readonly string[] }[], outFile: string, options: { tile?: number } = {}): Promise<string> {
  const { default: sharp } = await import("sharp");
  const tile = options.tile ?? 256;
  const gap = 8;
  const labelWidth = 120;
  const columns = Math.max(1, ...rows.map((r) => r.images.length));
  const width = labelWidth + columns * (tile + gap) + gap;
  const height = rows.length * (tile + gap) + gap;
  const layers: { input: Buffer; left: number; top: number }[] = [];
  for (const [r, row] of rows.entries()) {
    const top = gap + r * (tile + gap);
    const label = `<svg xmlns="http://www.w3.org/2000/svg" width="${labelWidth}" height="${tile}"><text x="${labelWidth - 12}" y="${tile / 2}" text-anchor="end" dominant-baseline="middle" font-family="DejaVu Sans, Helvetica, Arial, sans-serif" font-size="22" font-weight="bold" fill="#eeeeee">${escapeXml(row.label)}</text></svg>`;
    layers.push({ input: Buffer.from(label), left: 0, top });
    for (const [c, file] of row.images.entries()) {
      layers.push({ input: await tileOf(sharp, file, tile), left: labelWidth + gap + c * (tile + gap), top });
    }
  }
  await sharp({ create: { width, height, channels: 3, background: "#111111" } }).composite(layers).jpeg({ quality: 88 }).toFile(outFile);
  return outFile;
}
