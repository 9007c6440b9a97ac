// The export workflow reading a registered model from the bucket: the real @google-cloud/storage
// client (GcsStore) against fake-gcs-server, the version's artifactUri resolved to store keys.
import { existsSync, mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { Backend, ModelVersion } from "../../src/backends/backend.ts";
import { GcsStore } from "../../src/backends/vertex/store.ts";
import type { Context } from "../../src/context.ts";
import { parseSafetensors, serializeSafetensors, type Tensor } from "../../src/core/safetensors.ts";
import { exportLora } from "../../src/workflows/export.ts";
import { startGcsEmulator, type GcsEmulator } from "../support/gcs-emulator.ts";

const BUCKET = "export-bucket";
const RUN = "20260301-120000";
const MODULES = ["down_blocks.1.attentions.0.transformer_blocks.0.attn1.to_q", "mid_block.attentions.0.transformer_blocks.0.attn2.to_out.0"];

let emulator: GcsEmulator;
let dir: string;
beforeAll(async () => {
  emulator = await startGcsEmulator();
  await emulator.createBucket(BUCKET);
  dir = mkdtempSync(join(tmpdir(), "avatar-export-gcs-"));
});
afterAll(async () => {
  await emulator?.stop();
  rmSync(dir, { recursive: true, force: true });
});

function context(cwd: string): Context {
  const spinner = { update() {}, succeed() {}, fail() {}, warn() {}, stop() {} };
  return {
    cwd,
    flags: { json: true, input: false, yes: false, dryRun: false, verbose: false, quiet: true },
    prompts: { interactive: false, confirm: async () => false },
    out: { spinner: async () => spinner },
  } as unknown as Context;
}

describe("export from the bucket", () => {
  it("reads the version's artifactUri through the GCS store and writes the kohya file locally", async () => {
    const store = new GcsStore(emulator.storage(), BUCKET);
    const tensors = new Map<string, Tensor>();
    for (const m of MODULES) {
      tensors.set(`unet.${m}.lora.down.weight`, { dtype: "F32", shape: [4, 8], data: new Uint8Array(128) });
      tensors.set(`unet.${m}.lora.up.weight`, { dtype: "F32", shape: [8, 4], data: new Uint8Array(128) });
    }
    const key = `alice/runs/${RUN}/model`;
    await store.put(`${key}/pytorch_lora_weights.safetensors`, serializeSafetensors(tensors));
    const manifest = {
      schema: 1, name: "alice", run_id: RUN, base_model: "stabilityai/stable-diffusion-xl-base-1.0", base_revision: "a".repeat(40),
      pipeline: "sdxl", token: "zwx", class_word: "woman", instance_prompt: "a photo of zwx woman", resolution: 1024, rank: 4,
      steps: 1000, dataset_sha256: "0".repeat(64), trainer_version: "0.1.0", captions: "blip",
    };
    await store.put(`${key}/avatar.json`, Buffer.from(JSON.stringify(manifest)));
    const version: ModelVersion = {
      modelId: "123", name: "alice", versionId: "3", runId: RUN, artifactUri: store.uri(key),
      aliases: ["default"], labels: {}, createdAt: new Date().toISOString(),
    };
    expect(version.artifactUri).toBe(`gs://${BUCKET}/avatar/${key}`);
    const asked: (string | undefined)[] = [];
    const backend = {
      kind: "vertex",
      store,
      registry: { get: async (_name: string, v?: string) => (asked.push(v), version) },
    } as unknown as Backend;

    const result = await exportLora(context(dir), backend, { name: "alice", version: "3", format: "kohya", out: "alice.safetensors" });
    expect(asked).toEqual(["3"]);
    expect(result).toMatchObject({ version: "3", runId: RUN, pipeline: "sdxl", layers: 2, tensors: 6, trigger: "zwx woman", baseRevision: "a".repeat(40), out: join(dir, "alice.safetensors") });
    const file = parseSafetensors(readFileSync(join(dir, "alice.safetensors")));
    expect([...file.tensors.keys()].filter((k) => k.endsWith(".alpha")).sort()).toEqual([
      "lora_unet_input_blocks_4_1_transformer_blocks_0_attn1_to_q.alpha",
      "lora_unet_middle_block_1_transformer_blocks_0_attn2_to_out_0.alpha",
    ]);
    expect(JSON.parse(readFileSync(join(dir, "alice.json"), "utf8"))).toMatchObject({ source: `gs://${BUCKET}/avatar/${key}`, trigger: "zwx woman" });
    expect(existsSync(join(dir, "alice.md"))).toBe(true);
  });
});
