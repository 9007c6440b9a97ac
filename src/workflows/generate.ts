// Generate: prompts → predict requests → image files, a contact sheet, and seeds to reproduce them.
// One image per request: the smallest unit of work, so every request fits what handler.py accepts
// on any GPU (it refuses up front what would not fit the GPU's memory, the endpoint's time limit
// or the 1.5 MB response limit of a shared Vertex endpoint), and Ctrl-C loses at most one image.
import { mkdir, readdir, readFile, rmdir, writeFile } from "node:fs/promises";
import { basename, join, resolve } from "node:path";
import type { Backend } from "../backends/backend.ts";
import type { Context } from "../context.ts";
import { AvatarError } from "../core/errors.ts";
import { newRunId } from "../core/names.ts";
import { outputsKey } from "../core/run-keys.ts";
import { withAvatar } from "../core/packs.ts";
import { writeContactSheet } from "../ui/contact-sheet.ts";

export interface GenerateInput {
  name: string;
  prompts: string[];
  negativePrompt?: string;
  numImages: number;
  /** Seed of the first image; image k gets seed + k. */
  seed?: number;
  steps?: number;
  guidance?: number;
  width?: number;
  height?: number;
  loraScale?: number;
  format: "jpeg" | "png";
  outDir: string;
  contactSheet: boolean;
  /** Also keep the results in the store, under <name>/outputs/<stamp>/ (`--batch`). */
  store?: boolean;
}

export interface GeneratedImage {
  file: string;
  prompt: string;
  seed: number;
  width?: number;
  height?: number;
  /** Blacked out by the base's safety checker (SD 1.5 has one; the handler keeps it). */
  nsfw: boolean;
}

export interface GenerateResult {
  dir: string;
  images: GeneratedImage[];
  contactSheet?: string;
  /** Where the store keeps a copy (with `store`). */
  stored?: { uri: string; objects: number };
}

const slug = (text: string) => text.toLowerCase().replace(/\{avatar\}/g, "").replace(/[^a-z0-9]+/g, "-").replace(/^-|-$/g, "").slice(0, 40) || "image";

/**
 * <parent>/<stamp>, or <stamp>-2, -3 … when a run in the same second has it: a folder of its own
 * for every run (created exclusively), so no run's images or images.json land in another's.
 */
async function newOutputFolder(parent: string, stamp: string): Promise<string> {
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

export async function generateImages(ctx: Context, backend: Backend, input: GenerateInput): Promise<GenerateResult> {
  const endpoint = await backend.serving.get(input.name);
  if (!endpoint || endpoint.state !== "ready") {
    throw new AvatarError("NOT_FOUND", `${input.name} is not deployed.`, { hint: `Run \`avatar deploy ${input.name}\` first.` });
  }
  const dir = await newOutputFolder(resolve(ctx.cwd, input.outDir, input.name), newRunId());
  const baseSeed = input.seed ?? Math.floor(Math.random() * 2 ** 31);
  const total = input.prompts.length * input.numImages;
  const progress = ctx.out.progress(`Generating ${total} image${total === 1 ? "" : "s"}`, total, "steps");
  const images: GeneratedImage[] = [];
  const parameters = {
    ...(input.steps !== undefined && { steps: input.steps }),
    ...(input.guidance !== undefined && { guidance: input.guidance }),
    ...(input.width !== undefined && { width: input.width }),
    ...(input.height !== undefined && { height: input.height }),
    ...(input.loraScale !== undefined && { lora_scale: input.loraScale }),
    format: input.format,
  };
  progress.update(0);
  try {
    for (const [p, raw] of input.prompts.entries()) {
      const prompt = withAvatar(raw);
      for (let i = 0; i < input.numImages; i++) {
        if (ctx.signal.aborted) throw new AvatarError("INTERRUPTED", `Interrupted after ${images.length} of ${total} images (kept in ${dir}).`);
        const seed = baseSeed + images.length; // every image its own seed, reproducible from the first
        const instance = input.negativePrompt ? { prompt, negative_prompt: input.negativePrompt } : { prompt };
        const response = await backend.serving.predict(input.name, { instances: [instance], parameters: { ...parameters, num_images: 1, seed } }, { signal: ctx.signal });
        const prediction = response.predictions[0] as { image_b64?: string; mime_type?: string; seed?: number; width?: number; height?: number; prompt?: string; nsfw?: boolean } | undefined;
        if (!prediction?.image_b64) throw new AvatarError("REMOTE_FAILED", "The endpoint answered without an image.");
        const extension = prediction.mime_type === "image/png" ? "png" : "jpg";
        const file = join(dir, `${String(images.length + 1).padStart(2, "0")}-${slug(raw)}-${seed}.${extension}`);
        await writeFile(file, Buffer.from(prediction.image_b64, "base64"));
        images.push({ file, prompt: prediction.prompt ?? prompt, seed: prediction.seed ?? seed, width: prediction.width, height: prediction.height, nsfw: prediction.nsfw === true });
        progress.update(images.length);
      }
    }
  } catch (error) {
    // A request refused up front (bad parameters, no endpoint) leaves no empty folder behind;
    // images already written stay (the error names the folder when interrupted).
    if (images.length === 0) await rmdir(dir).catch(() => undefined);
    throw error;
  }
  progress.done();
  for (const [index, image] of images.entries()) {
    if (image.nsfw) ctx.out.warn(`image ${index + 1} was blacked out by the safety checker (${basename(image.file)}); try another seed or prompt.`);
  }
  const contactSheet = input.contactSheet && images.length > 1 ? await writeContactSheet(images.map((i) => i.file), join(dir, "contact-sheet.jpg")) : undefined;
  await writeFile(join(dir, "images.json"), `${JSON.stringify({ name: input.name, images: images.map((i) => ({ ...i, file: i.file.slice(dir.length + 1) })) }, null, 2)}\n`);
  const stored = input.store ? await storeOutputs(ctx, backend, input.name, dir) : undefined;
  return { dir, images, contactSheet, ...(stored ? { stored } : {}) };
}

const contentTypes: Record<string, string> = { jpg: "image/jpeg", png: "image/png", json: "application/json" };

/** Copies a finished output folder to <name>/outputs/<stamp>/ in the store (the bucket on vertex). */
async function storeOutputs(ctx: Context, backend: Backend, name: string, dir: string): Promise<{ uri: string; objects: number }> {
  const key = outputsKey(name, basename(dir));
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
