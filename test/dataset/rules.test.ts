// Pure dataset rules (core/dataset, core/store-keys) and the streamed zip (workflows/zip).
import { execFileSync } from "node:child_process";
import { createHash } from "node:crypto";
import { writeFileSync } from "node:fs";
import { join } from "node:path";
import { Writable } from "node:stream";
import { pipeline } from "node:stream/promises";
import { afterAll, describe, expect, it } from "vitest";
import {
  countVerdict,
  datasetHash,
  datasetZipSize,
  differenceHash,
  dimensionProblem,
  entryName,
  fitInside,
  hammingDistance,
  orientedSize,
  selectImages,
  skipReason,
  sniffFormat,
  validateSizes,
  type Candidate,
} from "../../src/core/dataset.ts";
import { datasetKey, storeKeyProblem } from "../../src/core/store-keys.ts";
import { datasetZip, ZIP_DATE } from "../../src/workflows/zip.ts";
import { prepareReport, shellArg } from "../../src/commands/prepare.ts";
import type { PrepareSummary } from "../../src/workflows/prepare.ts";
import { bombPng, heicFile } from "../support/images.ts";
import { scratchDir } from "./helpers.ts";

const bytes = (...values: (number | string)[]) =>
  Uint8Array.from(values.flatMap((v) => (typeof v === "string" ? [...Buffer.from(v, "latin1")] : [v])));

describe("sniffFormat", () => {
  it.each([
    ["jpeg", bytes(0xff, 0xd8, 0xff, 0xe0, 0, 0x10, "JFIF")],
    ["png", bytes("\x89PNG\r\n\x1a\n", 0, 0, 0, 13)],
    ["webp", bytes("RIFF", 0, 0, 0, 0, "WEBPVP8 ")],
    ["gif", bytes("GIF89a", 1, 0)],
    ["gif", bytes("GIF87a", 1, 0)],
    ["tiff", bytes("II*\0", 8, 0, 0, 0)],
    ["tiff", bytes("MM\0*", 0, 0, 0, 8)],
    ["avif", bytes(0, 0, 0, 0x1c, "ftypavif", 0, 0, 0, 0, "avifmif1miaf")],
    ["avif", bytes(0, 0, 0, 0x1c, "ftypmif1", 0, 0, 0, 0, "mif1avifmiaf")],
    ["heic", bytes(0, 0, 0, 0x18, "ftypheic", 0, 0, 0, 0, "mif1heic")],
    ["heic", bytes(0, 0, 0, 0x18, "ftypmif1", 0, 0, 0, 0, "mif1heix")],
    ["jxl", bytes(0xff, 0x0a, 0, 0)],
    ["bmp", bytes("BM", 0, 0, 0, 0)],
    ["pdf", bytes("%PDF-1.7")],
    ["psd", bytes("8BPS", 0, 1)],
    ["svg", bytes('<?xml version="1.0"?>\n<svg xmlns="http://www.w3.org/2000/svg">')],
    ["svg", bytes("  <svg width='1'>")],
  ])("recognises %s", (format, head) => {
    expect(sniffFormat(head)).toBe(format);
  });

  it.each([
    ["empty", bytes()],
    ["text", bytes("hello, this is not an image")],
    ["zip", bytes("PK\x03\x04", 20, 0)],
    ["mp4", bytes(0, 0, 0, 0x18, "ftypisom", 0, 0, 2, 0, "isomiso2")],
    ["half a JPEG marker", bytes(0xff, 0xd8)],
  ])("rejects %s", (_name, head) => {
    expect(sniffFormat(head)).toBeUndefined();
  });

  it("recognises the test fixtures", () => {
    expect(sniffFormat(bombPng(10, 10).subarray(0, 64))).toBe("png");
    expect(sniffFormat(heicFile().subarray(0, 64))).toBe("heic");
  });
});

describe("geometry and sizes", () => {
  it("orientations 5-8 swap width and height", () => {
    expect(orientedSize(4000, 3000, undefined)).toEqual({ width: 4000, height: 3000 });
    for (const o of [1, 2, 3, 4]) expect(orientedSize(4000, 3000, o)).toEqual({ width: 4000, height: 3000 });
    for (const o of [5, 6, 7, 8]) expect(orientedSize(4000, 3000, o)).toEqual({ width: 3000, height: 4000 });
  });

  it("fitInside bounds the long side and never enlarges", () => {
    expect(fitInside(4000, 3000, 1024)).toEqual({ width: 1024, height: 768 });
    expect(fitInside(3000, 4000, 1024)).toEqual({ width: 768, height: 1024 });
    expect(fitInside(800, 600, 1024)).toEqual({ width: 800, height: 600 });
    expect(fitInside(1024, 1024, 1024)).toEqual({ width: 1024, height: 1024 });
  });

  it("dimensionProblem: pixel cap first, then the short side", () => {
    expect(dimensionProblem(100_000, 100_000, 512)).toBe("too-many-pixels");
    expect(dimensionProblem(10_001, 10_000, 512)).toBe("too-many-pixels");
    expect(dimensionProblem(10_000, 10_000, 512)).toBeUndefined();
    expect(dimensionProblem(4000, 511, 512)).toBe("too-small");
    expect(dimensionProblem(512, 512, 512)).toBeUndefined();
    expect(dimensionProblem(0, 0, 512)).toBeUndefined();
  });

  it("validateSizes rejects out-of-range or inconsistent sizes", () => {
    expect(() => validateSizes(1024, 512)).not.toThrow();
    expect(() => validateSizes(255, 128)).toThrow(/--max-size/);
    expect(() => validateSizes(4097, 512)).toThrow(/--max-size/);
    expect(() => validateSizes(1024.5, 512)).toThrow(/whole number/);
    expect(() => validateSizes(1024, 32)).toThrow(/--min-size/);
    expect(() => validateSizes(600, 700)).toThrow(/larger than --max-size/);
  });

  it("skip reasons are sentences with the numbers that matter", () => {
    expect(skipReason("too-small", { width: 400, height: 300, minSize: 512 })).toBe("too small (400x300; the short side must be at least 512 px)");
    expect(skipReason("too-many-pixels", { width: 100000, height: 100000 })).toBe("too many pixels (100000x100000; limit 100 megapixels)");
    expect(skipReason("near-duplicate", { of: "a.jpg", distance: 3 })).toBe("near-duplicate of a.jpg (distance 3)");
    expect(skipReason("heic")).toMatch(/HEIC/);
  });
});

describe("perceptual hash and selection", () => {
  const grid = (fn: (x: number, y: number) => number) => Uint8Array.from({ length: 17 * 16 }, (_, i) => fn(i % 17, Math.floor(i / 17)));

  it("differenceHash: 256 bits from a 17x16 grid, left < right", () => {
    expect(differenceHash(grid((x) => x * 10))).toBe("f".repeat(64));
    expect(differenceHash(grid((x) => 255 - x * 10))).toBe("0".repeat(64));
    expect(differenceHash(grid(() => 7))).toBe("0".repeat(64));
    expect(() => differenceHash(new Uint8Array(10))).toThrow(/expected 272/);
  });

  it("hammingDistance counts differing bits", () => {
    expect(hammingDistance("00000000", "00000000")).toBe(0);
    expect(hammingDistance("000000ff", "00000000")).toBe(8);
    expect(hammingDistance("0f0f0f0f", "0e0f0f0f")).toBe(1);
    expect(hammingDistance("80000001", "00000000")).toBe(2);
    expect(hammingDistance("ffffffff", "00000000")).toBe(32);
    expect(hammingDistance("f".repeat(64), "0".repeat(64))).toBe(256);
    expect(hammingDistance("0123456789abcdef".repeat(4), "fedcba9876543210".repeat(4))).toBe(256);
    expect(hammingDistance("0123456789abcdef".repeat(4), "0123456789abcdee".repeat(4))).toBe(4);
    expect(() => hammingDistance("00", "0000")).toThrow(/differ in length/);
  });

  const hashA = "0".repeat(64);
  const hashNear = "0".repeat(62) + "07"; // 3 bits away
  const hashFar = "f".repeat(64);
  const c = (path: string, sha: string, dhash: string, sourcePixels = 100, symlink = false): Candidate => ({ path, sha256: sha.repeat(64).slice(0, 64), dhash, sourcePixels, symlink });

  it("exact duplicates: the first path wins, real files before symlinks", () => {
    const d = selectImages([c("b.jpg", "1", hashA), c("a.jpg", "1", hashA), c("c.jpg", "2", hashFar)]);
    expect(d.map((x) => [x.path, x.kept])).toEqual([["a.jpg", true], ["b.jpg", false], ["c.jpg", true]]);
    expect(d[1]).toMatchObject({ code: "duplicate", of: "a.jpg" });
    const linked = selectImages([c("a-link.jpg", "1", hashA, 100, true), c("z.jpg", "1", hashA)]);
    expect(linked.find((x) => x.path === "z.jpg")!.kept).toBe(true);
    expect(linked.find((x) => x.path === "a-link.jpg")).toMatchObject({ kept: false, code: "duplicate", of: "z.jpg" });
  });

  it("near-duplicates: the larger original wins; distance above the threshold keeps both", () => {
    const d = selectImages([c("small.jpg", "1", hashA, 100), c("large.jpg", "2", hashNear, 400), c("other.jpg", "3", hashFar, 100)]);
    expect(d.find((x) => x.path === "large.jpg")!.kept).toBe(true);
    expect(d.find((x) => x.path === "small.jpg")).toMatchObject({ kept: false, code: "near-duplicate", of: "large.jpg", distance: 3 });
    expect(d.find((x) => x.path === "other.jpg")!.kept).toBe(true);
    const strict = selectImages([c("small.jpg", "1", hashA, 100), c("large.jpg", "2", hashNear, 400)], 2);
    expect(strict.every((x) => x.kept)).toBe(true);
  });

  it("kept photos are numbered in content order, independent of names", () => {
    const one = selectImages([c("x.jpg", "b", hashA), c("y.jpg", "a", hashFar)]);
    const two = selectImages([c("renamed-1.jpg", "b", hashA), c("renamed-2.jpg", "a", hashFar)]);
    const entries = (ds: typeof one) => ds.filter((x) => x.kept).map((x) => (x.kept ? [x.entry, x.path] : []));
    expect(entries(one)).toEqual([["0002.jpg", "x.jpg"], ["0001.jpg", "y.jpg"]]);
    expect(entries(two)).toEqual([["0002.jpg", "renamed-1.jpg"], ["0001.jpg", "renamed-2.jpg"]]);
  });
});

describe("names, hashes, verdicts", () => {
  it("entry names carry no user path", () => {
    expect(entryName(0, 20)).toBe("0001.jpg");
    expect(entryName(19, 20)).toBe("0020.jpg");
    expect(entryName(9999, 10000)).toBe("10000.jpg");
    expect(entryName(0, 10000)).toBe("00001.jpg");
  });

  it("datasetHash depends on content and order only", () => {
    const a = "a".repeat(64);
    const b = "b".repeat(64);
    expect(datasetHash([a, b])).toMatch(/^[0-9a-f]{64}$/);
    expect(datasetHash([a, b])).toBe(datasetHash([a, b]));
    expect(datasetHash([a, b])).not.toBe(datasetHash([b, a]));
    expect(datasetHash([a])).not.toBe(datasetHash([a, a]));
    const manual = createHash("sha256").update(`avatar-dataset-v1\n${a}\n${b}\n`).digest("hex");
    expect(datasetHash([a, b])).toBe(manual);
  });

  it("count thresholds: < 5 error, 5-9 warning, 10-20 recommended", () => {
    expect(countVerdict(0).level).toBe("error");
    expect(countVerdict(4).level).toBe("error");
    expect(countVerdict(5).level).toBe("warning");
    expect(countVerdict(9).level).toBe("warning");
    expect(countVerdict(10)).toEqual({ level: "ok" });
    expect(countVerdict(20)).toEqual({ level: "ok" });
    expect(countVerdict(61).level).toBe("ok");
    expect(countVerdict(61).message).toMatch(/rarely helps/);
  });

  it("store keys", () => {
    const sha = "0123456789abcdef".repeat(4);
    expect(datasetKey("alice", sha)).toBe(`alice/datasets/${sha}.zip`);
    expect(() => datasetKey("alice", "nothex")).toThrow(/Not a sha256/);
    expect(storeKeyProblem("alice/datasets/x.zip")).toBeUndefined();
    for (const bad of ["", "/abs", "trailing/", "a//b", "a/../b", "./a", "a/.hidden", "a\\b", "a b"]) {
      expect(storeKeyProblem(bad), bad).toBeDefined();
    }
  });
});

describe("the dataset zip", () => {
  const work = scratchDir();
  afterAll(work.cleanup);

  async function zipBytes(images: Parameters<typeof datasetZip>[0]): Promise<Buffer> {
    const chunks: Buffer[] = [];
    await pipeline(datasetZip(images), new Writable({ write: (c: Buffer, _e, cb) => (chunks.push(c), cb()) }));
    return Buffer.concat(chunks);
  }

  function files(count: number) {
    return Array.from({ length: count }, (_, i) => {
      const data = Buffer.alloc(1000 + i * 37, i + 1);
      const file = join(work.dir, `spool-${i}.bin`);
      writeFileSync(file, data);
      return { entry: entryName(i, count), file, sha256: createHash("sha256").update(data).digest("hex"), bytes: data.length };
    });
  }

  it("is deterministic, sized as predicted, and readable by unzip with fixed dates", async () => {
    const images = files(12);
    const first = await zipBytes(images);
    await new Promise((r) => setTimeout(r, 1100)); // a different wall-clock second must not matter
    const second = await zipBytes(images);
    expect(second.equals(first)).toBe(true);
    expect(first.length).toBe(datasetZipSize(images));
    const path = join(work.dir, "d.zip");
    writeFileSync(path, first);
    const listing = execFileSync("unzip", ["-Z", "-T", path], { encoding: "utf8" });
    const rows = listing.split("\n").filter((l) => /\d{4}\.jpg$/.test(l));
    expect(rows).toHaveLength(12);
    for (const row of rows) {
      expect(row).toMatch(/^-rw-r--r--/);
      expect(row).toContain("20000101.000000");
      expect(row).toContain(" stor ");
    }
    expect(execFileSync("unzip", ["-t", path], { encoding: "utf8" })).toContain("No errors detected");
    expect(ZIP_DATE.toISOString()).toBe("2000-01-01T00:00:00.000Z");
  });

  it("fails when a spooled image changed after hashing", async () => {
    const images = files(3);
    writeFileSync(images[1]!.file, "tampered");
    await expect(zipBytes(images)).rejects.toThrow(/changed while the dataset was being zipped/);
  });
});

describe("the human report", () => {
  const summary: PrepareSummary = {
    dir: "/x",
    files: [
      { path: "a.jpg", status: "kept", entry: "0001.jpg", width: 1024, height: 768, notes: ["turned upright (EXIF orientation 6)"] },
      { path: "evil\u001b[31mred\n.jpg", status: "skipped", code: "not-image", reason: "not an image" },
      { path: "small.jpg", status: "skipped", code: "too-small", reason: "too small (400x300; the short side must be at least 512 px)", source: { width: 400, height: 300, bytes: 10 } },
    ],
    images: [{ entry: "0001.jpg", path: "a.jpg", sha256: "a".repeat(64), bytes: 1000 }],
    sha256: "b".repeat(64),
    counts: { scanned: 3, kept: 1, skipped: 2 },
    sourceBytes: 4_000_000,
    bytes: 1000,
    maxSize: 1024,
    minSize: 512,
    warnings: [],
  };

  it("is a table of every file plus a summary; control characters in names are shown inert", () => {
    const lines = prepareReport(summary);
    expect(lines[0]).toMatch(/^file\s+result\s+size\s+note$/);
    expect(lines[1]).toMatch(/^a\.jpg\s+kept 0001\.jpg\s+1024x768\s+turned upright/);
    expect(lines[2]).toContain("evil\\x1b[31mred\\x0a.jpg");
    expect(lines.join("\n")).not.toContain("\u001b");
    expect(lines[3]).toMatch(/^small\.jpg\s+skipped\s+400x300\s+too small/);
    expect(lines).toContain("1 kept, 2 skipped of 3 files: 1000 B of JPEG (long side ≤ 1024 px) from 3.8 MB of originals.");
    expect(lines).toContain(`dataset sha256 ${"b".repeat(64)}`);
  });

  it("quotes folder names for the next command only when needed", () => {
    expect(shellArg("./selfies")).toBe("./selfies");
    expect(shellArg("my selfies")).toBe("'my selfies'");
    expect(shellArg("it's")).toBe("'it'\\''s'");
  });
});
