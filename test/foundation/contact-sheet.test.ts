// The demo's labelled contact sheet: one row per label (base, avatar), images left to right, so a
// column compares the same prompt and seed. Checked on the pixels of a small sheet.
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import sharp from "sharp";
import { afterAll, describe, expect, it } from "vitest";
import { writeLabelledContactSheet } from "../../src/ui/contact-sheet.ts";

const dir = mkdtempSync(join(tmpdir(), "avatar-sheet-"));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

async function solid(name: string, rgb: [number, number, number]): Promise<string> {
  const file = join(dir, `${name}.png`);
  await sharp({ create: { width: 64, height: 64, channels: 3, background: { r: rgb[0], g: rgb[1], b: rgb[2] } } }).png().toFile(file);
  return file;
}

async function pixel(file: string, x: number, y: number): Promise<number[]> {
  const { data } = await sharp(file).extract({ left: x, top: y, width: 1, height: 1 }).raw().toBuffer({ resolveWithObject: true });
  return [...data];
}

describe("writeLabelledContactSheet", () => {
  it("puts each row's images after its label, one row per label", async () => {
    const [red, green, blue] = await Promise.all([solid("red", [220, 20, 20]), solid("green", [20, 200, 20]), solid("blue", [20, 20, 220])]);
    const out = await writeLabelledContactSheet([{ label: "base", images: [red, green] }, { label: "avatar", images: [blue] }], join(dir, "sheet.jpg"), { tile: 32 });
    const meta = await sharp(out).metadata();
    const tile = 32, gap = 8, label = 120;
    expect(meta.width).toBe(label + 2 * (tile + gap) + gap);
    expect(meta.height).toBe(2 * (tile + gap) + gap);
    const centre = (row: number, col: number) => [label + gap + col * (tile + gap) + tile / 2, gap + row * (tile + gap) + tile / 2] as const;
    const [r1, g1, b1] = await pixel(out, ...centre(0, 0));
    expect(r1).toBeGreaterThan(150); // base row, first column: red
    expect(g1 + b1).toBeLessThan(150);
    const [, g2] = await pixel(out, ...centre(0, 1));
    expect(g2).toBeGreaterThan(150); // base row, second column: green
    const [r3, , b3] = await pixel(out, ...centre(1, 0));
    expect(b3).toBeGreaterThan(150); // avatar row, first column: blue
    expect(r3).toBeLessThan(100);
    expect(Math.max(...(await pixel(out, ...centre(1, 1))))).toBeLessThan(40); // no second avatar image: background
    // The label column carries light text on the dark background.
    const { data } = await sharp(out).extract({ left: 0, top: gap, width: label, height: tile }).greyscale().raw().toBuffer({ resolveWithObject: true });
    expect(Math.max(...data)).toBeGreaterThan(150);
  });
});
