// `avatar export` through the built CLI on the local backend: a registered model (a synthetic
// diffusers-format LoRA, registered with `register --artifact-uri`: no Python needed) written as
// the diffusers file it is and as a kohya file; bad input refused with the documented exit codes.
import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { parseSafetensors, serializeSafetensors, type Tensor } from "../../src/core/safetensors.ts";
import { cleanEnv, runCli } from "../support/cli.ts";

const NAME = "alice";
const SD15_RUN = "20260101-000000";
const SDXL_RUN = "20260102-000000";

function lora(modules: string[], rank: number): Buffer {
  const tensors = new Map<string, Tensor>();
  const f32 = (shape: number[]) => ({ dtype: "F32", shape, data: new Uint8Array(Float32Array.from({ length: shape[0]! * shape[1]! }, (_, i) => i / 100).buffer) });
  for (const m of modules) {
    tensors.set(`unet.${m}.lora.down.weight`, f32([rank, 16]));
    tensors.set(`unet.${m}.lora.up.weight`, f32([16, rank]));
  }
  return serializeSafetensors(tensors, { format: "pt" });
}

const attn = (block: string) => ["attn1", "attn2"].flatMap((a) => ["to_q", "to_k", "to_v", "to_out.0"].map((p) => `${block}.transformer_blocks.0.${a}.${p}`));

function modelFolder(dir: string, pipeline: "sd15" | "sdxl", runId: string, modules: string[], name = NAME): string {
  mkdirSync(dir, { recursive: true });
  writeFileSync(join(dir, "pytorch_lora_weights.safetensors"), lora(modules, 4));
  const manifest = {
    schema: 1, name, run_id: runId, base_model: pipeline === "sdxl" ? "stabilityai/stable-diffusion-xl-base-1.0" : "stable-diffusion-v1-5/stable-diffusion-v1-5",
    base_revision: pipeline === "sdxl" ? "462165984030d82259a11f4367a4eed129e94a7b" : null, pipeline, token: "sks", class_word: "person",
    instance_prompt: "a photo of sks person", resolution: pipeline === "sdxl" ? 1024 : 512, rank: 4, steps: 800,
    dataset_sha256: "0".repeat(64), trainer_version: "0.1.0", captions: "none",
  };
  writeFileSync(join(dir, "avatar.json"), JSON.stringify(manifest));
  return dir;
}

describe("avatar export", () => {
  let home: string;
  let env: Record<string, string | undefined>;
  const cli = (args: string[]) => runCli([...args, "--json"], { env, cwd: home });

  beforeAll(async () => {
    home = mkdtempSync(join(tmpdir(), "avatar-export-"));
    env = cleanEnv(home);
    const sd15 = modelFolder(join(home, "gpu", "sd15"), "sd15", SD15_RUN, [...attn("down_blocks.0.attentions.0"), ...attn("mid_block.attentions.0"), ...attn("up_blocks.3.attentions.2")]);
    const sdxl = modelFolder(join(home, "gpu", "sdxl"), "sdxl", SDXL_RUN, [...attn("down_blocks.2.attentions.1"), ...attn("up_blocks.0.attentions.2")]);
    for (const dir of [sd15, sdxl]) {
      const registered = await cli(["register", "--name", NAME, "--artifact-uri", dir]);
      expect(registered.code, registered.stderr).toBe(0);
    }
  });

  afterAll(() => rmSync(home, { recursive: true, force: true }));

  it("writes a kohya file with lora_unet_ keys and .alpha entries, and its card beside it", async () => {
    const { code, json, stderr } = await cli(["export", NAME, "--model-version", "1", "--format", "kohya", "--out", "x.safetensors"]);
    expect(code, stderr).toBe(0);
    expect(json!.data).toMatchObject({ name: NAME, version: "1", runId: SD15_RUN, format: "kohya", pipeline: "sd15", layers: 24, tensors: 72, trigger: "sks person", baseRevision: null });
    const file = parseSafetensors(readFileSync(join(home, "x.safetensors")));
    const keys = [...file.tensors.keys()];
    expect(keys.every((k) => k.startsWith("lora_unet_"))).toBe(true);
    expect(keys.filter((k) => k.endsWith(".alpha"))).toHaveLength(24);
    expect(keys).toContain("lora_unet_down_blocks_0_attentions_0_transformer_blocks_0_attn1_to_out_0.lora_down.weight");
    expect(keys).toContain("lora_unet_mid_block_attentions_0_transformer_blocks_0_attn2_to_k.lora_up.weight");
    expect(file.metadata).toMatchObject({ ss_network_dim: "4", ss_network_alpha: "4", ss_base_model_version: "sd_v1", "modelspec.trigger_phrase": "sks person" });
    const card = JSON.parse(readFileSync(join(home, "x.json"), "utf8"));
    expect(card).toMatchObject({ file: "x.safetensors", format: "kohya", trigger: "sks person", base_model: "stable-diffusion-v1-5/stable-diffusion-v1-5", base_revision: null, model_version: "1" });
    expect(readFileSync(join(home, "x.md"), "utf8")).toMatch(/Trigger phrase: `sks person`/);
  });

  it("names SDXL layers the LDM way and records the base revision (default version: the newest)", async () => {
    const { code, json, stderr } = await cli(["export", NAME, "--format", "kohya", "--out", "xl.safetensors"]);
    expect(code, stderr).toBe(0);
    expect(json!.data).toMatchObject({ version: "2", pipeline: "sdxl", baseRevision: "462165984030d82259a11f4367a4eed129e94a7b" });
    const keys = [...parseSafetensors(readFileSync(join(home, "xl.safetensors"))).tensors.keys()];
    expect(keys).toContain("lora_unet_input_blocks_8_1_transformer_blocks_0_attn2_to_v.lora_down.weight");
    expect(keys).toContain("lora_unet_output_blocks_2_1_transformer_blocks_0_attn1_to_out_0.alpha");
    expect(keys.some((k) => k.includes("down_blocks") || k.includes("up_blocks"))).toBe(false);
  });

  it("writes the diffusers file byte for byte as registered, named after the version by default", async () => {
    const { code, json, stderr } = await cli(["export", NAME, "--model-version", SD15_RUN]);
    expect(code, stderr).toBe(0);
    const out = join(home, `${NAME}-v1-diffusers.safetensors`);
    expect(json!.data.out).toBe(out);
    const stored = join(home, ".avatar", "store", "avatar", NAME, "runs", SD15_RUN, "model", "pytorch_lora_weights.safetensors");
    expect(readFileSync(out)).toEqual(readFileSync(stored));
    expect(existsSync(join(home, `${NAME}-v1-diffusers.json`)) && existsSync(join(home, `${NAME}-v1-diffusers.md`))).toBe(true);
  });

  it("refuses to overwrite without --yes, overwrites with it", async () => {
    writeFileSync(join(home, "taken.safetensors"), "mine");
    const refused = await cli(["export", NAME, "--out", "taken.safetensors"]);
    expect(refused.code).toBe(2);
    expect(refused.json!.error!.hint).toMatch(/--yes/);
    expect(readFileSync(join(home, "taken.safetensors"), "utf8")).toBe("mine");
    const forced = await cli(["export", NAME, "--out", "taken.safetensors", "--yes"]);
    expect(forced.code, forced.stderr).toBe(0);
    expect(readFileSync(join(home, "taken.safetensors")).byteLength).toBe(forced.json!.data.bytes);
  });

  it("--dry-run says what it would write and writes nothing", async () => {
    const { code, json } = await cli(["export", NAME, "--format", "kohya", "--out", "dry.safetensors", "--dry-run"]);
    expect(code).toBe(0);
    expect(json!.data).toMatchObject({ dryRun: true, format: "kohya", layers: 16 });
    expect(existsSync(join(home, "dry.safetensors")) || existsSync(join(home, "dry.json"))).toBe(false);
  });

  it("refuses a registered file that is not a safetensors LoRA, and one kohya cannot express", async () => {
    // Another avatar, so the versions above stay alice's newest.
    const broken = modelFolder(join(home, "gpu", "broken"), "sd15", "20260103-000000", [], "carol");
    writeFileSync(join(broken, "pytorch_lora_weights.safetensors"), "not safetensors at all");
    const te = modelFolder(join(home, "gpu", "te"), "sd15", "20260104-000000", [], "carol");
    writeFileSync(join(te, "pytorch_lora_weights.safetensors"), serializeSafetensors(new Map([
      ["text_encoder.text_model.encoder.layers.0.self_attn.q_proj.lora_A.weight", { dtype: "F32", shape: [1, 1], data: new Uint8Array(4) }],
    ])));
    for (const dir of [broken, te]) expect((await cli(["register", "--name", "carol", "--artifact-uri", dir])).code).toBe(0);
    const garbage = await cli(["export", "carol", "--model-version", "20260103-000000", "--format", "kohya", "--out", "g.safetensors"]);
    expect(garbage.code).toBe(2);
    expect(garbage.json!.error!.message).toMatch(/pytorch_lora_weights\.safetensors has a header length past the end of the file\.$/);
    const textEncoder = await cli(["export", "carol", "--model-version", "20260104-000000", "--format", "kohya", "--out", "t.safetensors"]);
    expect(textEncoder.code).toBe(2);
    expect(textEncoder.json!.error).toMatchObject({ code: "BAD_INPUT", hint: "--format diffusers exports it as it is." });
    expect(existsSync(join(home, "g.safetensors")) || existsSync(join(home, "t.safetensors"))).toBe(false);
  });

  it.each([
    ["an unknown avatar", ["export", "bob", "--out", "b.safetensors"], 6, "NOT_FOUND", /bob has no registered model/],
    ["an unknown version", ["export", NAME, "--model-version", "9", "--out", "b.safetensors"], 6, "NOT_FOUND", /version 9/],
    ["a bad --format", ["export", NAME, "--format", "ckpt"], 2, "USAGE", /--format ckpt/],
    ["--out in a missing folder", ["export", NAME, "--out", "no/such/dir/b.safetensors"], 2, "BAD_INPUT", /does not exist/],
    ["--out that is not .safetensors", ["export", NAME, "--out", "b.ckpt"], 2, "USAGE", /does not end in \.safetensors/],
    ["a bad name", ["export", "Not A Name"], 2, "BAD_INPUT", /.+/],
  ])("refuses %s (exit %i)", async (_what, args, exit, errorCode, message) => {
    const { code, json } = await cli(args);
    expect(code).toBe(exit);
    expect(json!.error).toMatchObject({ code: errorCode });
    expect(json!.error!.message).toMatch(message);
    expect(json!.error!.hint).toBeTruthy();
  });
});
