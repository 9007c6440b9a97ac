// A training run written straight into a store (local directory or the GCS emulator), in the layout
// the trainer leaves (Contract B): the dataset zip, runs/<run>/model/ and complete checkpoints with
// weights and samples. Samples are real face crops from the face library's package photos
// (test/support/faces.ts), so checkpoint scoring is tested without training anything.
import { createHash } from "node:crypto";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { buffer } from "node:stream/consumers";
import sharp from "sharp";
import type { ObjectStore } from "../../src/backends/store.ts";
import { datasetZip } from "../../src/workflows/zip.ts";
import { PEOPLE, cropRegion } from "./faces.ts";

export type Person = keyof typeof PEOPLE;

/**
 * Views of one person's crop, 512 px. Measured against a set of plain/bright/rotP6/zoomOut of the
 * same crop (see core/checkpoint-pick.ts): the mirrored views score 0.97-0.99 and are 19-26 hash
 * bits away (new views, not copies); the four set views themselves are copies (0-2 bits), and so
 * are rotM6 and warm (2-3 bits: a 6° turn of a training photo); rotM12 is 10 bits away.
 */
export async function personViews(person: Person) {
  const base = await (await cropRegion(PEOPLE[person])).png().toBuffer();
  const { width } = await sharp(base).metadata();
  const pad = Math.round(width! * 0.25);
  const at512 = (image: sharp.Sharp) => image.resize(512, 512).png().toBuffer();
  return {
    plain: await at512(sharp(base)),
    bright: await at512(sharp(base).modulate({ brightness: 1.2 })),
    rotP6: await at512(sharp(base).rotate(6, { background: "#808080" })),
    zoomOut: await at512(sharp(await sharp(base).extend({ top: pad, bottom: pad, left: pad, right: pad, background: "#7a8a99" }).png().toBuffer())),
    rotM6: await at512(sharp(base).rotate(-6, { background: "#808080" })),
    rotM12: await at512(sharp(base).rotate(-12, { background: "#808080" })),
    mirror: await at512(sharp(base).flop()),
    warm: await at512(sharp(base).rotate(-6, { background: "#808080" }).tint({ r: 255, g: 220, b: 180 })),
    mirrorRot: await at512(sharp(base).flop().rotate(8, { background: "#556677" })),
    mirrorWarm: await at512(sharp(base).flop().rotate(-10, { background: "#334455" }).tint({ r: 255, g: 225, b: 190 })),
    mirrorZoom: await at512(sharp(await sharp(base).flop().extend({ top: pad, bottom: pad, left: pad, right: pad, background: "#99aa88" }).png().toBuffer())),
  };
}

/** The views a dataset is made of (the "training photos"). */
export const TRAINING_VIEWS = ["plain", "bright", "rotP6", "zoomOut"] as const;

/** Seeded noise: what the tiny demo model's samples look like (no face). */
export function noise(seed: number, size = 256): Promise<Buffer> {
  let x = seed >>> 0 || 1;
  const data = Buffer.alloc(size * size * 3);
  for (let i = 0; i < data.length; i++) {
    x ^= x << 13;
    x ^= x >>> 17;
    x ^= x << 5;
    data[i] = x & 0xff;
  }
  return sharp(data, { raw: { width: size, height: size, channels: 3 } }).png().toBuffer();
}

/** The dataset zip of these photos (as upload stores it); returns its sha256 (the store key's name). */
export async function putDataset(store: ObjectStore, name: string, photos: Buffer[]): Promise<string> {
  const dir = mkdtempSync(join(tmpdir(), "avatar-scripted-ds-"));
  try {
    const images = [];
    for (const [i, photo] of photos.entries()) {
      const data = await sharp(photo).jpeg({ quality: 92 }).toBuffer(); // as prepare normalises them
      const file = join(dir, `${String(i + 1).padStart(4, "0")}.jpg`);
      writeFileSync(file, data);
      images.push({ entry: `${String(i + 1).padStart(4, "0")}.jpg`, file, sha256: createHash("sha256").update(data).digest("hex") });
    }
    const zip = await buffer(datasetZip(images));
    const sha = createHash("sha256").update(zip).digest("hex");
    await store.put(`${name}/datasets/${sha}.zip`, zip, { contentType: "application/zip", overwrite: true });
    return sha;
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

/** Distinct, recognisable bytes standing in for a checkpoint's LoRA weights. */
export const weightsOf = (step: number) => Buffer.from(`lora weights of step ${step}\n`.repeat(8));

/**
 * A finished run: model/ (avatar.json with steps = the last step, the last step's weights) and one
 * complete checkpoint per entry of `checkpoints` (step → its four samples, PNG).
 */
export async function putRun(store: ObjectStore, input: { name: string; runId: string; datasetSha256: string; checkpoints: Record<number, Buffer[]>; base?: string }): Promise<void> {
  const steps = Object.keys(input.checkpoints).map(Number).sort((a, b) => a - b);
  const last = steps.at(-1)!;
  const run = `${input.name}/runs/${input.runId}`;
  const manifest = {
    schema: 1, name: input.name, run_id: input.runId, base_model: input.base ?? "stable-diffusion-v1-5/stable-diffusion-v1-5", base_revision: null, pipeline: "sd15",
    token: "sks", class_word: "person", instance_prompt: "a photo of sks person", resolution: 512, rank: 4, steps: last,
    dataset_sha256: input.datasetSha256, trainer_version: "test", captions: "none",
  };
  for (const step of steps) {
    const folder = `${run}/checkpoints/checkpoint-${String(step).padStart(6, "0")}`;
    await store.put(`${folder}/pytorch_lora_weights.safetensors`, weightsOf(step), { overwrite: true });
    const kinds = ["close-up", "three-quarter", "style", "setting"];
    const samples = input.checkpoints[step]!.map((_, i) => ({ file: `sample-${i}.png`, prompt: `a ${kinds[i % 4]} photo of sks person`, seed: 1000 + i, kind: kinds[i % 4] }));
    for (const [i, image] of input.checkpoints[step]!.entries()) await store.put(`${folder}/samples/sample-${i}.png`, image, { overwrite: true });
    await store.put(`${folder}/samples/samples.json`, Buffer.from(JSON.stringify({ step, samples })), { overwrite: true });
    await store.put(`${folder}/COMPLETE`, Buffer.from(`${step}\n`), { overwrite: true });
  }
  await store.put(`${run}/model/pytorch_lora_weights.safetensors`, weightsOf(last), { overwrite: true });
  await store.put(`${run}/model/avatar.json`, Buffer.from(JSON.stringify(manifest)), { overwrite: true });
}
