// Generate: prompts → predict requests → image files, a contact sheet, and seeds to reproduce them.
// One image per request: the smallest unit of work, so every request fits what handler.py accepts
// on any GPU (it refuses up front what would not fit the GPU's memory, the endpoint's time limit
// or the 1.5 MB response limit of a shared Vertex endpoint), and Ctrl-C loses at most one image.
// Without an endpoint (--no-endpoint), generate-batch.ts makes the same files with a batch job.
import { rmdir } from "node:fs/promises";
import { resolve } from "node:path";
import type { Backend } from "../backends/backend.ts";
import type { Context } from "../context.ts";
import { AvatarError } from "../core/errors.ts";
import { newRunId } from "../core/names.ts";
import { withAvatar } from "../core/packs.ts";
import { finishOutputs, newOutputFolder, storeOutputs, writePrediction, type GeneratedImage, type Prediction } from "./generate-files.ts";

export type { GeneratedImage } from "./generate-files.ts";

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
  /** The studio to generate from (default: the avatar's own endpoint, else a studio serving it). */
  studio?: string;
  /** Also keep the results in the store, under <name>/outputs/<stamp>/ (`--batch`). */
  store?: boolean;
  /** Score each image's likeness to the avatar's photos in the store (default true). */
  likeness?: boolean;
}

export interface GenerateResult {
  dir: string;
  images: GeneratedImage[];
  contactSheet?: string;
  /** The studio that served the images (absent: the avatar's own endpoint). */
  studio?: string;
  /** Where the store keeps a copy (with `store`). */
  stored?: { uri: string; objects: number };
}

/** The handler's parameters every image of a generation shares (all but num_images and seed). */
export function sharedParameters(input: GenerateInput): Record<string, string | number> {
  return {
    ...(input.steps !== undefined && { steps: input.steps }),
    ...(input.guidance !== undefined && { guidance: input.guidance }),
    ...(input.width !== undefined && { width: input.width }),
    ...(input.height !== undefined && { height: input.height }),
    ...(input.loraScale !== undefined && { lora_scale: input.loraScale }),
    format: input.format,
  };
}

/** A random first seed: every image gets its own, reproducible from the first. */
export const firstSeed = (input: GenerateInput) => input.seed ?? Math.floor(Math.random() * 2 ** 31);

async function notDeployed(ctx: Context, backend: Backend, input: GenerateInput): Promise<AvatarError> {
  let hint = `Run \`avatar deploy ${input.name}\` first.`;
  if (backend.batch) {
    // Vertex: say what a batch job of these images would cost next to an endpoint.
    const { noEndpointHint } = await import("./generate-batch.ts");
    hint = await noEndpointHint(ctx, backend, input).catch(() => hint);
  }
  return new AvatarError("NOT_FOUND", `${input.name} is not deployed.`, { hint });
}

export async function generateImages(ctx: Context, backend: Backend, input: GenerateInput): Promise<GenerateResult> {
  // Her own endpoint, else a studio that serves her (or the one --studio names).
  const { findServingEndpoint } = await import("./studio.ts");
  const target = await findServingEndpoint(backend, input.name, input.studio);
  if (!target) throw await notDeployed(ctx, backend, input);
  const avatarParameter = target.avatar ? { avatar: target.avatar } : {};
  const dir = await newOutputFolder(resolve(ctx.cwd, input.outDir, input.name), newRunId());
  const baseSeed = firstSeed(input);
  const total = input.prompts.length * input.numImages;
  const progress = ctx.out.progress(`Generating ${total} image${total === 1 ? "" : "s"}`, total, "steps");
  const images: GeneratedImage[] = [];
  const parameters = sharedParameters(input);
  progress.update(0);
  try {
    for (const raw of input.prompts) {
      const prompt = withAvatar(raw);
      for (let i = 0; i < input.numImages; i++) {
        if (ctx.signal.aborted) throw new AvatarError("INTERRUPTED", `Interrupted after ${images.length} of ${total} images (kept in ${dir}).`);
        const seed = baseSeed + images.length; // every image its own seed, reproducible from the first
        const instance = input.negativePrompt ? { prompt, negative_prompt: input.negativePrompt } : { prompt };
        const response = await backend.serving.predict(target.endpoint, { instances: [instance], parameters: { ...parameters, ...avatarParameter, num_images: 1, seed } }, { signal: ctx.signal });
        const prediction = response.predictions[0] as Prediction | undefined;
        if (!prediction?.image_b64) throw new AvatarError("REMOTE_FAILED", "The endpoint answered without an image.");
        images.push(await writePrediction(dir, images.length + 1, raw, prompt, seed, prediction));
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
  const contactSheet = await finishOutputs(ctx, input.name, dir, images, input.contactSheet, input.likeness === false ? undefined : backend);
  const stored = input.store ? await storeOutputs(ctx, backend, input.name, dir) : undefined;
  return { dir, images, contactSheet, ...(stored ? { stored } : {}), ...(target.studio ? { studio: target.studio } : {}) };
}
