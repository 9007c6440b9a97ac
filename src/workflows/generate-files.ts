// The files a generation leaves, the same whether the images came from an endpoint or a batch job:
// <out>/<name>/<stamp>/NN-<prompt>-<seed>.jpg|png, contact-sheet.jpg, images.json (seeds), and with
// --batch / --no-endpoint a copy in the store under <name>/outputs/<stamp>/.
import { mkdir, readdir, readFile, writeFile } from "node:fs/promises";
import { basename, join } from "node:path";
import type { Backend } from "../backends/backend.ts";
import type { Context } from "../context.ts";
import { AvatarError } from "../core/errors.ts";
import { outputsKey } from "../core/run-keys.ts";
import { writeContactSheet } from "../ui/contact-sheet.ts";

export interface GeneratedImage {
  file: string;
  prompt: string;
  seed: number;
  width?: number;
  height?: number;
  /** Blacked out by the base's safety checker (SD 1.5 has one; the handler keeps it). */
  nsfw: boolean;
  /** Likeness to the avatar's training photos (workflows/likeness.ts); null: no face. Absent: not scored. */
  likeness?: number | null;
  /** Whether a face was found (with likeness). */
  face?: boolean;
}

/** What the handler answers per image. */
export interface Prediction {
  image_b64?: string;
  mime_type?: string;
  seed?: number;
  width?: number;
  height?: number;
  prompt?: string;
  nsfw?: boolean;
}

const slug = (text: string) => text.toLowerCase().replace(/\{avatar\}/g, "").replace(/[^a-z0-9]+/g, "-").replace(/^-|-$/g, "").slice(0, 40) || "image";

/** `NN-<prompt as given>-<seed>.<ext>`: the image's place in the set (1-based), its prompt and seed. */
export const imageFileName = (position: number, raw: string, seed: number, mimeType: string | undefined) =>
  `${String(position).padStart(2, "0")}-${slug(raw)}-${seed}.${mimeType === "image/png" ? "png" : "jpg"}`;

/** Writes one predicted image into `dir`; its record for images.json. */
export async function writePrediction(dir: string, position: number, raw: string, prompt: string, seed: number, prediction: Prediction): Promise<GeneratedImage> {
  if (!prediction.image_b64) throw new AvatarError("REMOTE_FAILED", "The model answered without an image.");
  const file = join(dir, imageFileName(position, raw, prediction.seed ?? seed, prediction.mime_type));
  await writeFile(file, Buffer.from(prediction.image_b64, "base64"));
  return { file, prompt: prediction.prompt ?? prompt, seed: prediction.seed ?? seed, width: prediction.width, height: prediction.height, nsfw: prediction.nsfw === true };
}

/**
 * <parent>/<stamp>, or <stamp>-2, -3 … when a run in the same second has it: a folder of its own
 * for every run (created exclusively), so no run's images or images.json land in another's.
 */
export async function newOutputFolder(parent: string, stamp: string): Promise<string> {
  try {
    await mkdir(parent, { recursive: true });
    for (let n = 1; ; n++) {
      const dir = join(parent, n === 1 ? stamp : `${stamp}-${n}`);
      try {
        await mkdir(dir);
        return dir;
      } catch (error) {
        if ((error as NodeJS.ErrnoException).code !== "EEXIST" || n >= 100) throw error;
      }
    }
  } catch (error) {
    throw new AvatarError("BAD_INPUT", `Cannot create an output folder in ${parent}: ${(error as NodeJS.ErrnoException).code ?? (error as Error).message}.`, {
      hint: "Pass a writable folder with --out.",
    });
  }
}

/**
 * The safety checker's warnings, the contact sheet (more than one image) and images.json, with each
 * image's likeness when `likeness` gives the store holding the avatar's photos. Scores into `images`.
 */
export async function finishOutputs(ctx: Context, name: string, dir: string, images: GeneratedImage[], contactSheet: boolean, likeness?: Pick<Backend, "store">): Promise<string | undefined> {
  if (likeness) {
    const { likenessOfGenerated } = await import("./likeness.ts");
    const scored = await likenessOfGenerated(ctx, likeness, name, images);
    images.splice(0, images.length, ...scored);
  }
  for (const [index, image] of images.entries()) {
    if (image.nsfw) ctx.out.warn(`image ${index + 1} was blacked out by the safety checker (${basename(image.file)}); try another seed or prompt.`);
  }
  const sheet = contactSheet && images.length > 1 ? await writeContactSheet(images.map((i) => i.file), join(dir, "contact-sheet.jpg")) : undefined;
  await writeFile(join(dir, "images.json"), `${JSON.stringify({ name, images: images.map((i) => ({ ...i, file: i.file.slice(dir.length + 1) })) }, null, 2)}\n`);
  return sheet;
}

const contentTypes: Record<string, string> = { jpg: "image/jpeg", png: "image/png", json: "application/json" };

/** Copies a finished output folder to <name>/outputs/<stamp>/ in the store (the bucket on vertex). */
export async function storeOutputs(ctx: Context, backend: Backend, name: string, dir: string, stamp = basename(dir)): Promise<{ uri: string; objects: number }> {
  const key = outputsKey(name, stamp);
  const files = (await readdir(dir)).sort();
  const spinner = await ctx.out.spinner(`Keeping ${files.length} files in ${backend.store.uri(key)}/`);
  try {
    for (const file of files) {
      const extension = file.slice(file.lastIndexOf(".") + 1);
      await backend.store.put(`${key}/${file}`, await readFile(join(dir, file)), { contentType: contentTypes[extension] ?? "application/octet-stream", overwrite: true });
    }
  } catch (error) {
    spinner.fail();
    throw error;
  }
  spinner.succeed(`Kept ${files.length} files in ${backend.store.uri(key)}/`);
  return { uri: `${backend.store.uri(key)}/`, objects: files.length };
}
