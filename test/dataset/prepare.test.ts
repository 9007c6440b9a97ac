// The hostile-input suite: a folder built by the test with everything a real photo folder (or an
// attacker) can hold. Each file gets its documented verdict, nothing crashes, and no file outside
// the folder is ever read.
import { execFileSync } from "node:child_process";
import { mkdirSync, readdirSync, readFileSync, realpathSync, renameSync, symlinkSync, writeFileSync } from "node:fs";
import { join, sep } from "node:path";
import sharp from "sharp";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { prepareDataset, type FileReport, type PreparedDataset } from "../../src/workflows/prepare.ts";
import { AvatarError } from "../../src/core/errors.ts";
import {
  animated,
  bombPng,
  cmykJpeg,
  heicFile,
  jpeg,
  photo,
  png,
  quickPhoto,
  sidewaysJpeg,
  tiff,
  webp,
  writeFiles,
  writePhotos,
} from "../support/images.ts";
import { scratchDir, testCtx } from "./helpers.ts";

const work = scratchDir();
afterAll(work.cleanup);

async function expectBadInput(promise: Promise<unknown>, message: RegExp, hint?: RegExp): Promise<AvatarError> {
  const error = await promise.then(
    () => undefined,
    (e: unknown) => e,
  );
  expect(error).toBeInstanceOf(AvatarError);
  const e = error as AvatarError;
  expect(e.code).toBe("BAD_INPUT");
  expect(e.exitCode).toBe(2);
  expect(e.message).toMatch(message);
  if (hint) expect(e.hint).toMatch(hint);
  return e;
}

describe("a hostile folder", () => {
  const root = join(work.dir, "hostile");
  const folder = join(root, "selfies");
  const outside = join(root, "outside");
  const reads: string[] = [];
  let prepared: PreparedDataset;
  let byPath: Map<string, FileReport>;
  let stderr = "";

  beforeAll(async () => {
    mkdirSync(folder, { recursive: true });
    mkdirSync(outside, { recursive: true });
    writeFileSync(join(outside, "secret.jpg"), await jpeg(900, 800, 600));
    await writePhotos(folder, 6, { seed: 10 });
    const original = await jpeg(50, 800, 600);
    const nearTwin = await sharp(original).modulate({ brightness: 1.04 }).jpeg({ quality: 60 }).toBuffer();
    const sideways = await sidewaysJpeg(60, 900, 700);
    const uprightTwin = await photo(60, 900, 700).jpeg({ quality: 75 }).toBuffer();
    const good = await jpeg(70, 800, 600);
    writeFiles(folder, {
      "ñandú 😀 selfie.jpg": await jpeg(80, 800, 600),
      "with  two  spaces .JPG": await jpeg(81, 800, 600),
      "original.jpg": original,
      "near-twin.jpg": nearTwin,
      "sideways.jpg": sideways,
      "upright-twin.jpg": uprightTwin,
      "exact-a.jpg": good,
      "exact-b.jpg": good,
      "private.jpg": await jpeg(90, 800, 600, { privateExif: true }),
      "cmyk.jpg": await cmykJpeg(91, 800, 600),
      "deep.png": await png(92, 800, 600, { sixteenBit: true }),
      "alpha.png": await png(93, 800, 600, { alpha: true }),
      "photo.webp": await webp(94, 800, 600),
      "photo.tiff": await tiff(95, 800, 600),
      "anim.gif": await animated("gif", 96, 600, 600),
      "anim.webp": await animated("webp", 97, 600, 600),
      "fake.jpg": "this is text, not a JPEG\n",
      "notes.txt": "hello",
      "zero.jpg": Buffer.alloc(0),
      "truncated.jpg": (await jpeg(98, 800, 600)).subarray(0, 20_000),
      "bomb.png": bombPng(100_000, 100_000),
      "small.jpg": await jpeg(99, 400, 300),
      "IMG_0001.HEIC": heicFile(),
      "drawing.svg": '<svg xmlns="http://www.w3.org/2000/svg" width="800" height="800"><image href="file:///etc/passwd"/></svg>',
      ".DS_Store": "junk",
    });
    mkdirSync(join(folder, "sub"));
    writeFileSync(join(folder, "sub", "nested.jpg"), await jpeg(100, 800, 600));
    symlinkSync(join(outside, "secret.jpg"), join(folder, "link-out.jpg"));
    symlinkSync("../outside/secret.jpg", join(folder, "relative-out.jpg"));
    symlinkSync("loop-b.jpg", join(folder, "loop-a.jpg"));
    symlinkSync("loop-a.jpg", join(folder, "loop-b.jpg"));
    symlinkSync("missing.jpg", join(folder, "dangling.jpg"));
    symlinkSync("photo-01.jpg", join(folder, "link-in.jpg"));
    symlinkSync(outside, join(folder, "outside-dir"));
    execFileSync("mkfifo", [join(folder, "pipe.jpg")]);

    const ctx = testCtx(work.dir);
    prepared = await prepareDataset(ctx, { dir: "hostile/selfies", onRead: (p) => reads.push(p), out: join(root, "normalised") });
    stderr = ctx.stderr();
    byPath = new Map(prepared.summary.files.map((f) => [f.path, f]));
  }, 120_000);

  afterAll(() => prepared?.dispose());

  const verdicts: [string, string, RegExp?][] = [
    ["fake.jpg", "not-image"],
    ["notes.txt", "not-image"],
    ["zero.jpg", "empty"],
    ["truncated.jpg", "corrupt", /corrupt or truncated/],
    ["bomb.png", "too-many-pixels", /100000x100000/],
    ["small.jpg", "too-small", /400x300.*at least 512/],
    ["IMG_0001.HEIC", "heic", /convert it to JPEG/],
    ["drawing.svg", "unsupported-format", /SVG/],
    [".DS_Store", "hidden"],
    ["sub", "folder", /--recursive/],
    ["link-out.jpg", "symlink-outside", /outside the folder/],
    ["relative-out.jpg", "symlink-outside"],
    ["outside-dir", "symlink-outside"],
    ["loop-a.jpg", "symlink-broken"],
    ["loop-b.jpg", "symlink-broken"],
    ["dangling.jpg", "symlink-broken"],
    ["pipe.jpg", "not-regular"],
    ["exact-b.jpg", "duplicate", /exact duplicate of exact-a\.jpg/],
    ["link-in.jpg", "duplicate", /exact duplicate of/],
  ];

  it.each(verdicts)("%s is skipped as %s", (path, code, reason) => {
    const report = byPath.get(path);
    expect(report, path).toBeDefined();
    expect(report!.status).toBe("skipped");
    expect(report!.code).toBe(code);
    expect(report!.reason).toBeTruthy();
    if (reason) expect(report!.reason).toMatch(reason);
  });

  it("keeps every decodable photo once, with the notes that explain what changed", () => {
    const kept = prepared.summary.files.filter((f) => f.status === "kept").map((f) => f.path);
    for (const path of [
      "photo-01.jpg",
      "photo-06.jpg",
      "ñandú 😀 selfie.jpg",
      "with  two  spaces .JPG",
      "private.jpg",
      "cmyk.jpg",
      "deep.png",
      "alpha.png",
      "photo.webp",
      "photo.tiff",
      "anim.gif",
      "anim.webp",
      "exact-a.jpg",
    ]) {
      expect(kept, path).toContain(path);
    }
    expect(byPath.get("cmyk.jpg")!.notes).toContain("CMYK converted to sRGB");
    expect(byPath.get("deep.png")!.notes).toContain("16-bit reduced to 8-bit");
    expect(byPath.get("alpha.png")!.notes).toContain("transparency flattened onto white");
    expect(byPath.get("anim.gif")!.notes).toContain("first of 3 frames");
    expect(byPath.get("anim.webp")!.notes).toContain("first of 3 frames");
  });

  it("drops near-duplicates, keeping one of each pair", () => {
    const pair = [byPath.get("original.jpg")!, byPath.get("near-twin.jpg")!];
    expect(pair.filter((f) => f.status === "kept")).toHaveLength(1);
    const dropped = pair.find((f) => f.status === "skipped")!;
    expect(dropped.code).toBe("near-duplicate");
    expect(dropped.reason).toMatch(/near-duplicate of (original|near-twin)\.jpg \(distance \d+\)/);
  });

  it("applies EXIF orientation: a sideways photo comes out upright and matches its upright twin", () => {
    const sideways = byPath.get("sideways.jpg")!;
    const twin = byPath.get("upright-twin.jpg")!;
    // Stored 700 wide x 900 high with orientation 6 → shown 900x700 → normalised 900x700 (no upscaling).
    expect(sideways.source).toMatchObject({ width: 900, height: 700 });
    const kept = [sideways, twin].filter((f) => f.status === "kept");
    expect(kept).toHaveLength(1);
    expect(kept[0]).toMatchObject({ width: 900, height: 700 });
    expect([sideways, twin].find((f) => f.status === "skipped")!.code).toBe("near-duplicate");
    expect(sideways.notes).toContain("turned upright (EXIF orientation 6)");
  });

  it("never reads a file outside the folder", () => {
    const real = realpathSync(folder);
    expect(reads.length).toBeGreaterThan(20);
    for (const path of reads) expect(path.startsWith(real + sep), path).toBe(true);
    expect(reads.some((p) => p.includes("secret"))).toBe(false);
  });

  it("reports every entry of the folder, in a stable order", () => {
    const listed = readdirSync(folder).sort();
    expect(prepared.summary.files.map((f) => f.path).sort()).toEqual(listed);
    const paths = prepared.summary.files.map((f) => f.path);
    expect(paths).toEqual([...paths].sort((a, b) => (a < b ? -1 : a > b ? 1 : 0)));
    expect(prepared.summary.counts.kept + prepared.summary.counts.skipped).toBe(listed.length);
  });

  it("writes normalised JPEGs named 0001.jpg … without any metadata, long side ≤ 1024", async () => {
    const outDir = join(root, "normalised");
    const names = readdirSync(outDir).sort();
    expect(names).toEqual(prepared.images.map((i) => i.entry));
    expect(names[0]).toBe("0001.jpg");
    for (const name of names) {
      const bytes = readFileSync(join(outDir, name));
      const meta = await sharp(bytes).metadata();
      expect(meta.format).toBe("jpeg");
      expect(meta.exif).toBeUndefined();
      expect(meta.xmp).toBeUndefined();
      expect(meta.iptc).toBeUndefined();
      expect(meta.orientation).toBeUndefined();
      expect(meta.space).toBe("srgb");
      expect(meta.channels).toBe(3);
      expect(Math.max(meta.width!, meta.height!)).toBeLessThanOrEqual(1024);
      for (const secret of ["AvatarTestCam", "SN-0042-PRIVATE", "Jane Private", "Secret Model"]) {
        expect(bytes.includes(Buffer.from(secret)), `${name} contains ${secret}`).toBe(false);
      }
    }
    const privateEntry = byPath.get("private.jpg")!.entry!;
    expect(readFileSync(join(outDir, privateEntry)).includes(Buffer.from("GPS"))).toBe(false);
  });

  it("warns about HEIC files with a conversion hint", () => {
    expect(stderr).toMatch(/HEIC\/HEIF photo was skipped.*sips -s format jpeg/);
  });

  it("--recursive reads sub-folders but still never follows a symlinked folder", async () => {
    const ctx = testCtx(work.dir);
    const again = await prepareDataset(ctx, { dir: folder, recursive: true });
    await again.dispose();
    const files = new Map(again.summary.files.map((f) => [f.path, f]));
    expect(files.get("sub/nested.jpg")?.status).toBe("kept");
    expect(files.get("outside-dir")?.code).toBe("symlink-outside");
    expect(again.summary.sha256).not.toBe(prepared.summary.sha256);
  });
});

describe("folder-level rules", () => {
  it("an empty folder exits 2", async () => {
    const dir = join(work.dir, "empty");
    mkdirSync(dir);
    await expectBadInput(prepareDataset(testCtx(work.dir), { dir }), /Only 0 usable photos; at least 5/, /no files/);
  });

  it("a folder of non-images exits 2", async () => {
    const dir = join(work.dir, "junk");
    mkdirSync(dir);
    writeFiles(dir, { "a.jpg": "text", "b.png": "more text", "c.pdf": "%PDF-1.7\n", "d.zip": Buffer.from("PK\x03\x04") });
    const ctx = testCtx(work.dir);
    await expectBadInput(prepareDataset(ctx, { dir }), /Only 0 usable photos/, /Add more photos/);
    expect(ctx.stderr()).toContain("skipped a.jpg: not an image");
    expect(ctx.stderr()).toContain("skipped c.pdf: PDF format is not supported");
  });

  it("a folder of HEIC photos exits 2 with the conversion hint", async () => {
    const dir = join(work.dir, "iphone");
    mkdirSync(dir);
    for (let i = 0; i < 6; i++) writeFileSync(join(dir, `IMG_${i}.HEIC`), heicFile());
    await expectBadInput(prepareDataset(testCtx(work.dir), { dir }), /Only 0 usable/, /sips -s format jpeg/);
  });

  it("a missing folder or a file instead of a folder exits 2", async () => {
    await expectBadInput(prepareDataset(testCtx(work.dir), { dir: "does-not-exist" }), /No such folder: does-not-exist/);
    const file = join(work.dir, "a-file.jpg");
    writeFileSync(file, await jpeg(1, 600, 600));
    await expectBadInput(prepareDataset(testCtx(work.dir), { dir: file }), /is not a folder/);
  });

  it("out-of-range sizes exit 2", async () => {
    await expectBadInput(prepareDataset(testCtx(work.dir), { dir: ".", maxSize: 100 }), /--max-size must be a whole number from 256 to 4096/);
    await expectBadInput(prepareDataset(testCtx(work.dir), { dir: ".", maxSize: 512, minSize: 600 }), /larger than --max-size/);
  });

  it("4 photos exit 2; 5-9 photos pass with a warning; 10 pass quietly", async () => {
    const dir = join(work.dir, "few");
    mkdirSync(dir);
    await writePhotos(dir, 4, { seed: 300, width: 600, height: 600 });
    await expectBadInput(prepareDataset(testCtx(work.dir), { dir }), /Only 4 usable photos; at least 5 are needed \(10-20 recommended\)/);
    await writePhotos(dir, 1, { seed: 310, width: 600, height: 600, prefix: "more-" });
    const ctx5 = testCtx(work.dir);
    const five = await prepareDataset(ctx5, { dir });
    await five.dispose();
    expect(five.summary.counts.kept).toBe(5);
    expect(five.summary.warnings[0]).toMatch(/Only 5 usable photos; 10-20 give a noticeably better likeness/);
    expect(ctx5.stderr()).toMatch(/warning: Only 5 usable photos/);
    await writePhotos(dir, 5, { seed: 320, width: 600, height: 600, prefix: "extra-" });
    const ten = await prepareDataset(testCtx(work.dir), { dir });
    await ten.dispose();
    expect(ten.summary.counts.kept).toBe(10);
    expect(ten.summary.warnings).toEqual([]);
  });

  it("--max-size bounds the long side and never enlarges; --min-size is configurable", async () => {
    const dir = join(work.dir, "sizes");
    mkdirSync(dir);
    writeFiles(dir, {
      "big.jpg": await jpeg(400, 2000, 1500),
      "portrait.jpg": await jpeg(401, 1500, 2000),
      "exact.jpg": await jpeg(402, 700, 700),
      "small.jpg": await jpeg(403, 600, 520),
      "smaller.jpg": await jpeg(404, 560, 530),
    });
    const p = await prepareDataset(testCtx(work.dir), { dir, maxSize: 640, minSize: 520 });
    await p.dispose();
    const f = new Map(p.summary.files.map((x) => [x.path, x]));
    expect(f.get("big.jpg")).toMatchObject({ status: "kept", width: 640, height: 480 });
    expect(f.get("portrait.jpg")).toMatchObject({ status: "kept", width: 480, height: 640 });
    expect(f.get("exact.jpg")).toMatchObject({ status: "kept", width: 640, height: 640 });
    expect(f.get("small.jpg")).toMatchObject({ status: "kept", width: 600, height: 520 });
    expect(f.get("smaller.jpg")).toMatchObject({ status: "kept", width: 560, height: 530 });
    const strict = prepareDataset(testCtx(work.dir), { dir, maxSize: 640, minSize: 600 });
    await expectBadInput(strict, /Only 3 usable/);
  });

  it("the same photos give the same bytes and hash, whatever their file names", async () => {
    const dir = join(work.dir, "stable");
    mkdirSync(dir);
    await writePhotos(dir, 6, { seed: 500, width: 700, height: 600 });
    const a = await prepareDataset(testCtx(work.dir), { dir });
    const aBytes = a.images.map((i) => readFileSync(i.file));
    await a.dispose();
    for (const name of readdirSync(dir)) renameSync(join(dir, name), join(dir, `renamed ${name.toUpperCase()}`));
    const b = await prepareDataset(testCtx(work.dir), { dir });
    const bBytes = b.images.map((i) => readFileSync(i.file));
    await b.dispose();
    expect(b.summary.sha256).toBe(a.summary.sha256);
    expect(b.summary.images.map((i) => i.sha256)).toEqual(a.summary.images.map((i) => i.sha256));
    expect(bBytes).toEqual(aBytes);
    expect(b.summary.images.map((i) => i.entry)).toEqual(["0001.jpg", "0002.jpg", "0003.jpg", "0004.jpg", "0005.jpg", "0006.jpg"]);
  });

  it("refuses a non-empty --out folder and replaces earlier output", async () => {
    const dir = join(work.dir, "outcheck");
    mkdirSync(dir);
    await writePhotos(dir, 5, { seed: 600, width: 600, height: 600 });
    const out = join(work.dir, "outcheck-out");
    mkdirSync(out);
    writeFileSync(join(out, "keep-me.txt"), "mine");
    await expectBadInput(prepareDataset(testCtx(work.dir), { dir, out }), /--out folder .* is not empty \(keep-me\.txt\)/);
    const out2 = join(work.dir, "outcheck-out2");
    mkdirSync(out2);
    writeFileSync(join(out2, "0099.jpg"), "stale");
    const p = await prepareDataset(testCtx(work.dir), { dir, out: out2 });
    await p.dispose();
    expect(readdirSync(out2).sort()).toEqual(["0001.jpg", "0002.jpg", "0003.jpg", "0004.jpg", "0005.jpg"]);
  });

  it("an aborted run stops with INTERRUPTED", async () => {
    const dir = join(work.dir, "abort");
    mkdirSync(dir);
    await writePhotos(dir, 8, { seed: 700, width: 600, height: 600 });
    const controller = new AbortController();
    controller.abort();
    const error = await prepareDataset(testCtx(work.dir, controller.signal), { dir }).catch((e: unknown) => e);
    expect(error).toMatchObject({ code: "INTERRUPTED" });
  });

  it("handles 300+ files with flat results and keeps them all", async () => {
    const dir = join(work.dir, "many");
    mkdirSync(dir);
    for (let i = 0; i < 310; i++) {
      writeFileSync(join(dir, `img-${String(i).padStart(3, "0")}.jpg`), await quickPhoto(10_000 + i, 520, 520).jpeg({ quality: 70 }).toBuffer());
    }
    const ctx = testCtx(work.dir);
    const started = Date.now();
    const p = await prepareDataset(ctx, { dir });
    console.log(`prepare of 310 files: ${Date.now() - started} ms`);
    await p.dispose();
    expect(p.summary.counts).toEqual({ scanned: 310, kept: 310, skipped: 0 });
    expect(p.images.at(-1)!.entry).toBe("0310.jpg");
    expect(p.summary.warnings[0]).toMatch(/more than 20 rarely helps/);
  }, 120_000);
});
