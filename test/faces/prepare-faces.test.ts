// Face-aware prepare on real photos (the face library's own group shots, cut and varied): skips,
// crops, faces.json in the zip and the hash, the summary, and the CLI's --json (the must-show).
import { execFileSync } from "node:child_process";
import { mkdirSync, readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { Writable } from "node:stream";
import { pipeline } from "node:stream/promises";
import sharp from "sharp";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { datasetHash, datasetZipSize } from "../../src/core/dataset.ts";
import { AvatarError } from "../../src/core/errors.ts";
import { prepareDataset, type FileReport, type PreparedDataset } from "../../src/workflows/prepare.ts";
import { datasetZip } from "../../src/workflows/zip.ts";
import { cleanEnv, runCli } from "../support/cli.ts";
import { noisePhoto, PEOPLE, personPhotos, regionPhoto, samplePhoto, TWO_PEOPLE } from "../support/faces.ts";
import { scratchDir, testCtx } from "../dataset/helpers.ts";

const work = scratchDir("avatar-faces-");
afterAll(work.cleanup);

/** One person's six photos, a friend, a noise image and a two-person photo (the must-show folder). */
const mixed = join(work.dir, "mixed");
let prepared: PreparedDataset;
let byPath: Map<string, FileReport>;

beforeAll(async () => {
  mkdirSync(mixed);
  const mine = await personPhotos();
  mine.forEach((photo, i) => writeFileSync(join(mixed, `me-${i}.jpg`), photo));
  writeFileSync(join(mixed, "friend.jpg"), await regionPhoto(PEOPLE.c));
  writeFileSync(join(mixed, "noise.jpg"), await noisePhoto());
  writeFileSync(join(mixed, "couple.jpg"), await regionPhoto(TWO_PEOPLE));
  prepared = await prepareDataset(testCtx(work.dir), { dir: mixed, faceCheck: true, baseResolution: 512 });
  byPath = new Map(prepared.summary.files.map((f) => [f.path, f]));
});
afterAll(() => prepared?.dispose());

describe("prepare with face checks", () => {
  it("skips the other person, the noise and the two-person photo, each with its code", () => {
    expect(byPath.get("friend.jpg")).toMatchObject({ status: "skipped", code: "different-person" });
    expect(byPath.get("friend.jpg")!.reason).toMatch(/different person/);
    expect(byPath.get("noise.jpg")).toMatchObject({ status: "skipped", code: "no-face", face: { faces: 0 } });
    expect(byPath.get("couple.jpg")).toMatchObject({ status: "skipped", code: "multi-face", face: { faces: 2 } });
    expect(prepared.summary.warnings.join("\n")).toMatch(/friend\.jpg looks like someone else/);
  });

  it("keeps the person's six photos as square crops at the base resolution with their face boxes", () => {
    const kept = prepared.summary.files.filter((f) => f.status === "kept");
    expect(kept.map((f) => f.path).sort()).toEqual(["me-0.jpg", "me-1.jpg", "me-2.jpg", "me-3.jpg", "me-4.jpg", "me-5.jpg"]);
    for (const f of kept) {
      expect(f).toMatchObject({ width: 512, height: 512 });
      const face = f.face!;
      expect(face.faces).toBe(1);
      expect(face.similarity).toBeGreaterThan(0.95);
      expect(face.size).toBeGreaterThan(0.2);
      expect(face.sharpness).toBeGreaterThan(40);
      expect(face.exposure).toBeGreaterThan(40);
      expect(["close-up", "head-and-shoulders"]).toContain(face.framing);
      // The face is inside the photo, the crop contains it, and the stored box is inside the crop.
      const [x0, y0, x1, y1] = face.box!;
      const [cx0, cy0, cx1, cy1] = face.crop!;
      expect(cx0 <= x0 && cy0 <= y0 && cx1 >= x1 && cy1 >= y1).toBe(true);
      expect(x1).toBeLessThanOrEqual(f.source!.width);
      const [ex0, ey0, ex1, ey1] = face.entryBox!;
      expect(ex0 >= 0 && ey0 >= 0 && ex1 <= 512 && ey1 <= 512 && ex1 > ex0 && ey1 > ey0).toBe(true);
    }
  });

  it("faces.json holds each kept image's box, and the dataset hash covers it", () => {
    const manifest = JSON.parse(prepared.manifest!.data.toString("utf8"));
    expect(Object.keys(manifest)).toEqual(["schema", "images"]);
    expect(manifest.schema).toBe(1);
    expect(Object.keys(manifest.images)).toEqual(prepared.images.map((i) => i.entry));
    for (const f of prepared.summary.files.filter((r) => r.status === "kept")) {
      expect(manifest.images[f.entry!]).toEqual({ width: 512, height: 512, box: f.face!.entryBox });
    }
    const withoutManifest = datasetHash(prepared.images.map((i) => i.sha256));
    expect(prepared.summary.sha256).toBe(datasetHash(prepared.images.map((i) => i.sha256), prepared.manifest!.sha256));
    expect(prepared.summary.sha256).not.toBe(withoutManifest);
  });

  it("the stored crop shows the face where faces.json says", async () => {
    const manifest = JSON.parse(prepared.manifest!.data.toString("utf8"));
    const first = prepared.images[0]!;
    const { loadFaceModel } = await import("../../src/workflows/faces/index.ts");
    const { data, info } = await sharp(first.file).removeAlpha().raw().toBuffer({ resolveWithObject: true });
    const [face] = await (await loadFaceModel()).detect({ data: new Uint8Array(data), width: info.width, height: info.height });
    const [x0, y0, x1, y1] = manifest.images[first.entry].box as number[];
    const [dx0, dy0, dx1, dy1] = face!.box;
    const overlap = Math.max(0, Math.min(x1!, dx1) - Math.max(x0!, dx0)) * Math.max(0, Math.min(y1!, dy1) - Math.max(y0!, dy0));
    const union = (x1! - x0!) * (y1! - y0!) + (dx1 - dx0) * (dy1 - dy0) - overlap;
    expect(overlap / union).toBeGreaterThan(0.6);
  });

  it("the zip ends with faces.json, is sized as predicted and passes unzip -t", async () => {
    const extras = [{ entry: "faces.json", data: prepared.manifest!.data, bytes: prepared.manifest!.bytes }];
    const chunks: Buffer[] = [];
    await pipeline(datasetZip(prepared.images, extras), new Writable({ write: (c: Buffer, _e, cb) => (chunks.push(c), cb()) }));
    const zip = Buffer.concat(chunks);
    expect(zip.length).toBe(datasetZipSize(prepared.images, extras));
    const path = join(work.dir, "dataset.zip");
    writeFileSync(path, zip);
    expect(execFileSync("unzip", ["-t", path], { encoding: "utf8" })).toContain("No errors detected");
    expect(execFileSync("unzip", ["-Z1", path], { encoding: "utf8" }).trim().split("\n")).toEqual([...prepared.images.map((i) => i.entry), "faces.json"]);
    expect(execFileSync("unzip", ["-p", path, "faces.json"])).toEqual(prepared.manifest!.data);
  });

  it("ends with a dataset summary: usable photos, framings, variety and advice for a small set", () => {
    const faces = prepared.summary.faces!;
    expect(faces.usable).toBe(6);
    expect(faces.resolution).toBe(512);
    expect(faces.framings["close-up"] + faces.framings["head-and-shoulders"]).toBe(6);
    expect(["low", "medium", "high"]).toContain(faces.variety);
    expect(faces.advice).toMatch(/Only 6 usable photos/);
  });

  it("with face checks off, behaves as before: whole photos, no faces.json, no face fields", async () => {
    const plain = await prepareDataset(testCtx(work.dir), { dir: mixed });
    await plain.dispose();
    expect(plain.manifest).toBeUndefined();
    expect(plain.summary.faces).toBeUndefined();
    expect(plain.summary.files.every((f) => f.face === undefined)).toBe(true);
    expect(plain.summary.counts.kept).toBe(9);
    expect(plain.summary.sha256).toBe(datasetHash(plain.images.map((i) => i.sha256)));
  });
});

describe("too few usable photos", () => {
  it("face-too-small, blurry, no-face and multi-face on a group photo: the exit-2 error carries every file's reason", async () => {
    const dir = join(work.dir, "weak");
    mkdirSync(dir);
    const [sharpPhoto] = await personPhotos(PEOPLE.b);
    writeFileSync(join(dir, "good.jpg"), sharpPhoto!);
    writeFileSync(join(dir, "blurred.jpg"), await sharp(sharpPhoto!).blur(6).jpeg().toBuffer());
    writeFileSync(join(dir, "small-face.jpg"), await regionPhoto(PEOPLE.c, 1)); // 560 px photo: at most a 560 px crop
    writeFileSync(join(dir, "noise.jpg"), await noisePhoto(800, 800));
    writeFileSync(join(dir, "group.jpg"), readFileSync(samplePhoto(4))); // four friends on a sofa
    const error = await prepareDataset(testCtx(work.dir), { dir, faceCheck: true, baseResolution: 1024 }).catch((e: unknown) => e);
    expect(error).toBeInstanceOf(AvatarError);
    expect((error as AvatarError).message).toMatch(/Only 1 usable photo/);
    const files = (error as AvatarError).details!.files as FileReport[];
    const codes = Object.fromEntries(files.map((f) => [f.path, f.code ?? f.status]));
    expect(codes).toEqual({ "blurred.jpg": "blurry", "good.jpg": "kept", "group.jpg": "multi-face", "noise.jpg": "no-face", "small-face.jpg": "face-too-small" });
    expect(files.find((f) => f.path === "small-face.jpg")!.reason).toMatch(/1024 px/);
  });
});

describe("avatar prepare --json (CLI)", () => {
  it("must-show: different-person, no-face and multi-face skips, face boxes for the kept photos", async () => {
    const r = await runCli(["prepare", mixed, "--json", "--base", "sd15"], { env: cleanEnv(work.dir, { AVATAR_FACE_CHECK: "1" }), cwd: work.dir });
    expect(r.code, r.stderr).toBe(0);
    const files = r.json!.data.files as FileReport[];
    const codes = Object.fromEntries(files.map((f) => [f.path, f.code ?? f.status]));
    expect(codes).toEqual({
      "couple.jpg": "multi-face",
      "friend.jpg": "different-person",
      "me-0.jpg": "kept",
      "me-1.jpg": "kept",
      "me-2.jpg": "kept",
      "me-3.jpg": "kept",
      "me-4.jpg": "kept",
      "me-5.jpg": "kept",
      "noise.jpg": "no-face",
    });
    for (const f of files.filter((x) => x.status === "kept")) {
      expect(f.face!.box).toHaveLength(4);
      expect(f.face!.entryBox).toHaveLength(4);
    }
    expect(r.json!.data.faces.resolution).toBe(512);
    // The same photos, in-process, give the same dataset (deterministic crops and manifest).
    expect(r.json!.data.sha256).toBe(prepared.summary.sha256);
  });

  it("--no-face-check keeps every decodable photo; too few faces is exit 2 with error.details.files", async () => {
    const off = await runCli(["prepare", mixed, "--json", "--no-face-check"], { env: cleanEnv(work.dir, { AVATAR_FACE_CHECK: "1" }), cwd: work.dir });
    expect(off.code, off.stderr).toBe(0);
    expect(off.json!.data.counts.kept).toBe(9);
    expect(off.json!.data.faces).toBeUndefined();
    // --base only sizes the crops, but a typo in it is still rejected without face checks.
    const typo = await runCli(["prepare", mixed, "--json", "--no-face-check", "--base", "sdx1"], { env: cleanEnv(work.dir), cwd: work.dir });
    expect(typo.code).toBe(2);
    expect((typo.json!.error as { message: string }).message).toMatch(/Unknown base model "sdx1"/);

    const dir = join(work.dir, "few");
    mkdirSync(dir);
    for (const name of ["me-0.jpg", "noise.jpg", "couple.jpg"]) writeFileSync(join(dir, name), readFileSync(join(mixed, name)));
    const r = await runCli(["prepare", dir, "--json", "--base", "sd15"], { env: cleanEnv(work.dir, { AVATAR_FACE_CHECK: "1" }), cwd: work.dir });
    expect(r.code).toBe(2);
    expect(r.stderr).not.toMatch(/\n\s+at .+:\d+:\d+/);
    const error = r.json!.error as { code: string; message: string; details: { files: FileReport[] } };
    expect(error.code).toBe("BAD_INPUT");
    expect(error.message).toMatch(/Only 1 usable photo/);
    expect(error.details.files.map((f) => [f.path, f.code ?? f.status])).toEqual([
      ["couple.jpg", "multi-face"],
      ["me-0.jpg", "kept"],
      ["noise.jpg", "no-face"],
    ]);
  });
});
