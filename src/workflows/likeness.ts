// Likeness: how much an image's face looks like an avatar's training photos, by the face library's
// identity embeddings (workflows/faces). Used by `avatar likeness`, by `generate` (images.json) and
// by the checkpoint scoring of `register` (checkpoint-scores.ts).
//
// References come from the avatar's newest dataset zip in the store (the normalised photos it was
// trained on, with faces.json naming each photo's face box when prepare wrote one) or from a folder.
import { readdir, readFile, stat } from "node:fs/promises";
import { extname, join, resolve } from "node:path";
import { buffer } from "node:stream/consumers";
import type { Backend } from "../backends/backend.ts";
import type { Context } from "../context.ts";
import { type Box, faceHash } from "../core/face-hash.ts";
import { DECODABLE_FORMATS, hammingDistance, SNIFF_BYTES, sniffFormat } from "../core/dataset.ts";
import { nearCopyOf, type PhotoMatch } from "../core/checkpoint-pick.ts";
import { cosineSimilarity, likeness as likenessOf } from "../core/faces.ts";
import { AvatarError } from "../core/errors.ts";
import { datasetKey, datasetsPrefix } from "../core/store-keys.ts";
import { validateAvatarName } from "../core/names.ts";
import type { Face, FaceModel } from "./faces/index.ts";
import { readZipEntries } from "./zip-read.ts";

/** Images are decoded to at most this many pixels on their long side before detection. */
export const DETECT_MAX_SIDE = 640;
const IMAGE_EXTENSIONS = new Set([".jpg", ".jpeg", ".png", ".webp"]);

export interface ReferenceFace {
  photo: string;
  embedding: Float32Array;
  /** faceHash of the face region (near-copy checks). */
  hash: string;
}

export interface References {
  /** Where the photos came from: a store URI or a folder. */
  source: string;
  photos: number;
  faces: ReferenceFace[];
}

export interface ImageLikeness {
  face: boolean;
  /** Faces found in the image (the largest one is scored). */
  faces: number;
  likeness: number | null;
  /** The training photo whose face is closest, with its similarity and hash distance. */
  closest?: PhotoMatch;
  /** The training photo this image nearly copies (core/checkpoint-pick.ts nearCopyOf). */
  nearCopy?: PhotoMatch;
}

interface Decoded {
  data: Uint8Array;
  width: number;
  height: number;
}

/** A face box prepare recorded (faces.json), in the pixels of a photo `width` wide. */
interface KnownFace {
  box: Box;
  width: number;
}

async function decode(bytes: Uint8Array, what: string): Promise<Decoded> {
  const { default: sharp } = await import("sharp");
  try {
    const { data, info } = await sharp(bytes, { limitInputPixels: 100_000_000 })
      .rotate()
      .resize({ width: DETECT_MAX_SIDE, height: DETECT_MAX_SIDE, fit: "inside", withoutEnlargement: true })
      .removeAlpha()
      .toColourspace("srgb")
      .raw()
      .toBuffer({ resolveWithObject: true });
    return { data: new Uint8Array(data.buffer, data.byteOffset, data.length), width: info.width, height: info.height };
  } catch (error) {
    throw new AvatarError("BAD_INPUT", `${what} is not an image this tool can read (${(error as Error).message}).`, { hint: "Pass JPEG, PNG or WebP files." });
  }
}

const area = (b: Face["box"]) => Math.max(0, b[2] - b[0]) * Math.max(0, b[3] - b[1]);

function overlap(a: Box, b: Box): number {
  const w = Math.min(a[2], b[2]) - Math.max(a[0], b[0]);
  const h = Math.min(a[3], b[3]) - Math.max(a[1], b[1]);
  if (w <= 0 || h <= 0) return 0;
  return (w * h) / (area(a as Face["box"]) + area(b as Face["box"]) - w * h);
}

/** The face to score: the one that matches the known box best, else the largest. */
function mainFace(faces: readonly Face[], known?: Box): Face | undefined {
  if (faces.length === 0) return undefined;
  if (known) return [...faces].sort((a, b) => overlap(b.box, known) - overlap(a.box, known))[0];
  return [...faces].sort((a, b) => area(b.box) - area(a.box))[0];
}

async function faceOf(model: FaceModel, bytes: Uint8Array, what: string, known?: KnownFace): Promise<{ face?: Face; faces: number; decoded: Decoded }> {
  const decoded = await decode(bytes, what);
  const faces = await model.detect({ data: decoded.data, width: decoded.width, height: decoded.height });
  const scaled = known ? (known.box.map((v) => (v * decoded.width) / known.width) as unknown as Box) : undefined;
  return { face: mainFace(faces, scaled), faces: faces.length, decoded };
}

async function referenceFace(model: FaceModel, source: string, photo: string, bytes: Uint8Array, known?: KnownFace): Promise<ReferenceFace | undefined> {
  const { face, decoded } = await faceOf(model, bytes, `${photo} (in ${source})`, known);
  if (!face) return undefined;
  return { photo, embedding: face.embedding, hash: faceHash(decoded.data, decoded.width, decoded.height, face.box) };
}

/** Scores one image against the references (its largest face). */
export async function scoreImage(model: FaceModel, references: readonly ReferenceFace[], bytes: Uint8Array, what: string): Promise<ImageLikeness> {
  const { face, faces, decoded } = await faceOf(model, bytes, what);
  if (!face || references.length === 0) return { face: Boolean(face), faces, likeness: null };
  const hash = faceHash(decoded.data, decoded.width, decoded.height, face.box);
  const round = (n: number) => Math.round(n * 1000) / 1000;
  const matches: PhotoMatch[] = references.map((r) => ({ photo: r.photo, similarity: round(cosineSimilarity(face.embedding, r.embedding)), hashDistance: hammingDistance(hash, r.hash) }));
  const closest = [...matches].sort((a, b) => b.similarity - a.similarity)[0]!;
  const copy = nearCopyOf(matches);
  return {
    face: true,
    faces,
    likeness: round(likenessOf(face.embedding, references.map((r) => r.embedding))),
    closest,
    ...(copy ? { nearCopy: copy } : {}),
  };
}

/** The face boxes prepare recorded in the zip (faces.json, schema 1), by photo. */
function knownBoxes(entries: { name: string; data: Buffer }[]): Map<string, KnownFace> {
  const boxes = new Map<string, KnownFace>();
  const file = entries.find((e) => e.name === "faces.json");
  if (!file) return boxes;
  try {
    const parsed = JSON.parse(file.data.toString("utf8")) as { images?: Record<string, { box?: unknown; width?: unknown }> };
    for (const [photo, info] of Object.entries(parsed.images ?? {})) {
      const box = info?.box;
      const width = info?.width;
      if (Array.isArray(box) && box.length === 4 && box.every((v) => typeof v === "number") && typeof width === "number" && width > 0) boxes.set(photo, { box: box as unknown as Box, width });
    }
  } catch {
    // A faces.json we cannot read only costs the hint: the largest face is used.
  }
  return boxes;
}

async function referencesOf(model: FaceModel, source: string, photos: { name: string; data: Uint8Array }[], boxes: Map<string, KnownFace>, onPhoto?: () => void): Promise<References> {
  const faces: ReferenceFace[] = [];
  for (const photo of photos) {
    const face = await referenceFace(model, source, photo.name, photo.data, boxes.get(photo.name));
    if (face) faces.push(face);
    onPhoto?.();
  }
  return { source, photos: photos.length, faces };
}

const isImageName = (name: string) => IMAGE_EXTENSIONS.has(extname(name).toLowerCase());

/** Where an avatar's dataset zips live, as a folder URI (store keys, and so uri(), take no trailing /). */
export const datasetsUri = (store: Pick<Backend, "store">["store"], name: string) => `${store.uri(datasetsPrefix(name).slice(0, -1))}/`;

/** The dataset zip a reference set is read from: the given one, else the avatar's newest in the store. */
export async function avatarDatasetKey(backend: Pick<Backend, "store">, name: string, sha256?: string): Promise<string | undefined> {
  if (sha256) {
    const key = datasetKey(name, sha256);
    return (await backend.store.exists(key)) ? key : undefined;
  }
  const zips = (await backend.store.list(datasetsPrefix(name))).filter((o) => o.key.endsWith(".zip"));
  zips.sort((a, b) => (a.updated ?? "").localeCompare(b.updated ?? "") || a.key.localeCompare(b.key));
  return zips.at(-1)?.key;
}

/** The faces of an avatar's training photos (a dataset zip in the store). */
export async function referencesFromStore(model: FaceModel, backend: Pick<Backend, "store">, key: string, onPhoto?: (done: number, total: number) => void): Promise<References> {
  const entries = readZipEntries(await buffer(await backend.store.read(key)), backend.store.uri(key));
  const photos = entries.filter((e) => isImageName(e.name));
  let done = 0;
  return referencesOf(model, backend.store.uri(key), photos, knownBoxes(entries), () => onPhoto?.(++done, photos.length));
}

/** The faces of the photos in a folder (JPEG, PNG, WebP; not recursive). */
async function referencesFromFolder(model: FaceModel, dir: string, onPhoto?: (done: number, total: number) => void): Promise<References> {
  const names = (await readdir(dir)).filter((n) => isImageName(n) && !n.startsWith(".")).sort();
  const photos: { name: string; data: Uint8Array }[] = [];
  for (const name of names) {
    const info = await stat(join(dir, name));
    if (info.isFile()) photos.push({ name, data: await readFile(join(dir, name)) });
  }
  let done = 0;
  return referencesOf(model, dir, photos, new Map(), () => onPhoto?.(++done, photos.length));
}

/** The face model, loaded once per process (it takes a second or two). */
export async function faceModel(): Promise<FaceModel> {
  const { loadFaceModel } = await import("./faces/index.ts");
  return loadFaceModel();
}

export interface LikenessInput {
  /** An avatar name or a folder of photos (a folder wins when both exist). */
  source: string;
  images: string[];
}

export interface LikenessResult {
  source: { kind: "avatar" | "folder"; name?: string; uri: string; photos: number; faces: number };
  images: ({ file: string } & ImageLikeness)[];
}

/** Which reference set `source` names: an existing folder, else an avatar name (its newest dataset). */
async function resolveLikenessSource(cwd: string, source: string): Promise<{ kind: "folder"; dir: string } | { kind: "avatar"; name: string }> {
  const dir = resolve(cwd, source);
  const info = await stat(dir).catch(() => undefined);
  if (info?.isDirectory()) return { kind: "folder", dir };
  try {
    return { kind: "avatar", name: validateAvatarName(source) };
  } catch {
    // neither: say so below
  }
  throw new AvatarError("BAD_INPUT", `${source} is neither a folder nor an avatar name.`, { hint: "Pass a folder of the person's photos or the name of a trained avatar (`avatar list`)." });
}

/** Each image's likeness to the avatar's training photos or a folder of photos. */
export async function likenessOfImages(ctx: Context, input: LikenessInput): Promise<LikenessResult> {
  const files = input.images.map((f) => resolve(ctx.cwd, f));
  const images: { file: string; data: Uint8Array }[] = [];
  for (const file of files) {
    const info = await stat(file).catch(() => undefined);
    if (!info?.isFile()) throw new AvatarError("BAD_INPUT", `${file} is not a file.`, { hint: "Pass image files (JPEG, PNG, WebP) after the avatar name or photos folder." });
    const data = await readFile(file);
    // Before the face model loads and the references are read: a wrong file fails in milliseconds.
    const format = sniffFormat(data.subarray(0, SNIFF_BYTES));
    if (!format || !DECODABLE_FORMATS.includes(format)) {
      throw new AvatarError("BAD_INPUT", `${file} is not an image this tool can read (${format ?? "not an image format"}).`, { hint: "Pass JPEG, PNG or WebP files." });
    }
    images.push({ file, data });
  }
  const where = await resolveLikenessSource(ctx.cwd, input.source);
  const model = await faceModel();
  const progress = ctx.out.progress("Reading the reference photos", undefined, "steps");
  const onPhoto = (done: number, total: number) => progress.update(done, total);
  let references: References;
  let source: LikenessResult["source"];
  if (where.kind === "folder") {
    references = await referencesFromFolder(model, where.dir, onPhoto);
    source = { kind: "folder", uri: where.dir, photos: references.photos, faces: references.faces.length };
  } else {
    const { openStore } = await import("../backends/store.ts");
    const store = await openStore(ctx);
    try {
      const key = await avatarDatasetKey({ store }, where.name);
      if (!key) {
        progress.done();
        throw new AvatarError("NOT_FOUND", `${where.name} has no photos in ${datasetsUri(store, where.name)}.`, {
          hint: `Upload them with \`avatar upload <dir> --name ${where.name}\`, or pass a folder of the person's photos instead of the name.`,
        });
      }
      references = await referencesFromStore(model, { store }, key, onPhoto);
    } finally {
      await store.close();
    }
    source = { kind: "avatar", name: where.name, uri: references.source, photos: references.photos, faces: references.faces.length };
  }
  progress.done();
  if (references.photos === 0) {
    throw new AvatarError("BAD_INPUT", `${source.uri} holds no photos (JPEG, PNG or WebP).`, { hint: "Pass the folder of the person's photos, or the name of a trained avatar." });
  }
  if (references.faces.length === 0) {
    throw new AvatarError("BAD_INPUT", `No face was found in the ${references.photos} photo${references.photos === 1 ? "" : "s"} of ${source.uri}.`, { hint: "The reference photos must show the person's face (`avatar prepare <dir>` checks a folder)." });
  }
  const scored: LikenessResult["images"] = [];
  for (const image of images) scored.push({ file: image.file, ...(await scoreImage(model, references.faces, image.data, image.file)) });
  return { source, images: scored };
}

/**
 * Adds each generated image's likeness (and whether a face was found) when the avatar's photos are
 * at hand: a dataset of it in the store. Never fails a generation: a problem is one warning.
 */
export async function likenessOfGenerated<T extends { file: string }>(ctx: Context, backend: Pick<Backend, "store">, name: string, images: T[]): Promise<(T & { likeness?: number | null; face?: boolean })[]> {
  let key: string | undefined;
  try {
    key = await avatarDatasetKey(backend, name);
  } catch {
    key = undefined;
  }
  if (!key) {
    ctx.out.detail(`likeness: ${name} has no photos in the store; images.json has no likeness.`);
    return images;
  }
  const spinner = await ctx.out.spinner(`Scoring the likeness of ${images.length} image${images.length === 1 ? "" : "s"} to ${name}'s photos`);
  try {
    const model = await faceModel();
    const references = await referencesFromStore(model, backend, key);
    if (references.faces.length === 0) {
      spinner.succeed(`No face in ${name}'s ${references.photos} photos: no likeness scored.`);
      return images;
    }
    const out: (T & { likeness: number | null; face: boolean })[] = [];
    for (const image of images) {
      const scored = await scoreImage(model, references.faces, await readFile(image.file), image.file);
      out.push({ ...image, likeness: scored.likeness, face: scored.face });
    }
    const scoredValues = out.map((i) => i.likeness).filter((v): v is number => v !== null);
    spinner.succeed(`Likeness to ${name}'s photos: ${scoredValues.length ? `${Math.min(...scoredValues).toFixed(2)}–${Math.max(...scoredValues).toFixed(2)}` : "–"}, faces in ${scoredValues.length} of ${out.length} images`);
    return out;
  } catch (error) {
    spinner.fail();
    ctx.out.warn(`Likeness not scored: ${(error as Error).message}`);
    return images;
  }
}
