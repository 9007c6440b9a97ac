// The kohya key mapping and the safetensors reader/writer it runs on: pure, table-driven.
import { describe, expect, it } from "vitest";
import { kohyaMetadata, kohyaModuleName, toKohya } from "../../src/core/kohya.ts";
import { parseSafetensors, scalarF32, serializeSafetensors, type Tensor } from "../../src/core/safetensors.ts";

const f32 = (shape: number[], fill = (i: number) => i / 7): Tensor => {
  const n = shape.reduce((a, b) => a * b, 1);
  return { dtype: "F32", shape, data: new Uint8Array(Float32Array.from({ length: n }, (_, i) => fill(i)).buffer) };
};

/** A diffusers-format UNet LoRA as the trainer writes it: `unet.<module>.lora.{down,up}.weight`. */
function diffusersLora(modules: string[], rank = 4, width = 8): Map<string, Tensor> {
  const tensors = new Map<string, Tensor>();
  for (const m of modules) {
    tensors.set(`unet.${m}.lora.down.weight`, f32([rank, width]));
    tensors.set(`unet.${m}.lora.up.weight`, f32([width, rank], (i) => -i));
  }
  return tensors;
}

// Names as they appear in kohya-trained LoRAs of the real models (SD 1.5: diffusers module names;
// SDXL: the LDM input_blocks / middle_block / output_blocks names).
// prettier-ignore
const names: [pipeline: "sd15" | "sdxl", diffusers: string, kohya: string][] = [
  ["sd15", "down_blocks.0.attentions.0.transformer_blocks.0.attn1.to_q",      "lora_unet_down_blocks_0_attentions_0_transformer_blocks_0_attn1_to_q"],
  ["sd15", "down_blocks.2.attentions.1.transformer_blocks.0.attn2.to_out.0",  "lora_unet_down_blocks_2_attentions_1_transformer_blocks_0_attn2_to_out_0"],
  ["sd15", "mid_block.attentions.0.transformer_blocks.0.attn2.to_k",          "lora_unet_mid_block_attentions_0_transformer_blocks_0_attn2_to_k"],
  ["sd15", "up_blocks.3.attentions.2.transformer_blocks.0.attn1.to_v",        "lora_unet_up_blocks_3_attentions_2_transformer_blocks_0_attn1_to_v"],
  ["sdxl", "down_blocks.1.attentions.0.transformer_blocks.0.attn1.to_q",      "lora_unet_input_blocks_4_1_transformer_blocks_0_attn1_to_q"],
  ["sdxl", "down_blocks.1.attentions.1.transformer_blocks.1.attn2.to_k",      "lora_unet_input_blocks_5_1_transformer_blocks_1_attn2_to_k"],
  ["sdxl", "down_blocks.2.attentions.1.transformer_blocks.9.attn2.to_out.0",  "lora_unet_input_blocks_8_1_transformer_blocks_9_attn2_to_out_0"],
  ["sdxl", "mid_block.attentions.0.transformer_blocks.9.attn1.to_v",          "lora_unet_middle_block_1_transformer_blocks_9_attn1_to_v"],
  ["sdxl", "up_blocks.0.attentions.0.transformer_blocks.0.attn1.to_q",        "lora_unet_output_blocks_0_1_transformer_blocks_0_attn1_to_q"],
  ["sdxl", "up_blocks.0.attentions.2.transformer_blocks.9.attn2.to_out.0",    "lora_unet_output_blocks_2_1_transformer_blocks_9_attn2_to_out_0"],
  ["sdxl", "up_blocks.1.attentions.2.transformer_blocks.1.attn1.to_k",        "lora_unet_output_blocks_5_1_transformer_blocks_1_attn1_to_k"],
];

/** AUTOMATIC1111's convert_diffusers_name_to_compvis for attention layers (extensions-builtin/Lora/networks.py). */
function a1111Compvis(key: string): string {
  let m = /^lora_unet_down_blocks_(\d+)_attentions_(\d+)_(.+)$/.exec(key);
  if (m) return `diffusion_model_input_blocks_${1 + Number(m[1]) * 3 + Number(m[2])}_1_${m[3]}`;
  m = /^lora_unet_mid_block_attentions_(\d+)_(.+)$/.exec(key);
  if (m) return `diffusion_model_middle_block_1_${m[2]}`;
  m = /^lora_unet_up_blocks_(\d+)_attentions_(\d+)_(.+)$/.exec(key);
  if (m) return `diffusion_model_output_blocks_${Number(m[1]) * 3 + Number(m[2])}_1_${m[3]}`;
  return key.replace("lora_unet", "diffusion_model"); // SDXL: "already compvis keys"
}

describe("kohyaModuleName", () => {
  it.each(names)("%s %s → %s", (pipeline, diffusers, kohya) => {
    expect(kohyaModuleName(diffusers, pipeline)).toBe(kohya);
  });

  it("gives SD 1.5 and SDXL names that land on the same compvis layer in A1111", () => {
    // down_blocks.1.attentions.0 is input_blocks.4.1 in both UNets (two layers per block).
    const path = "down_blocks.1.attentions.0.transformer_blocks.0.attn1.to_q";
    expect(a1111Compvis(kohyaModuleName(path, "sd15"))).toBe("diffusion_model_input_blocks_4_1_transformer_blocks_0_attn1_to_q");
    expect(a1111Compvis(kohyaModuleName(path, "sdxl"))).toBe("diffusion_model_input_blocks_4_1_transformer_blocks_0_attn1_to_q");
    const up = "up_blocks.1.attentions.2.transformer_blocks.0.attn2.to_out.0";
    expect(a1111Compvis(kohyaModuleName(up, "sd15"))).toBe(a1111Compvis(kohyaModuleName(up, "sdxl")));
  });

  it.each([
    ["down_blocks.1.resnets.0.conv1", /outside the SDXL attention blocks/],
    ["down_blocks.1.attentions.2.transformer_blocks.0.attn1.to_q", /outside the SDXL attention blocks/],
    ["mid_block.attentions.1.transformer_blocks.0.attn1.to_q", /outside the SDXL attention blocks/],
  ])("refuses SDXL layer %s", (path, message) => {
    expect(() => kohyaModuleName(path, "sdxl")).toThrow(message);
  });
});

describe("toKohya", () => {
  const modules = ["down_blocks.1.attentions.0.transformer_blocks.0.attn1.to_q", "up_blocks.0.attentions.1.transformer_blocks.0.attn2.to_out.0"];

  it("renames down/up, keeps the bytes, and adds alpha = rank as a float32 scalar", () => {
    const input = diffusersLora(modules, 4);
    const { tensors, modules: n, rank } = toKohya(input, "sdxl");
    expect([n, rank]).toEqual([2, 4]);
    expect([...tensors.keys()].sort()).toEqual([
      "lora_unet_input_blocks_4_1_transformer_blocks_0_attn1_to_q.alpha",
      "lora_unet_input_blocks_4_1_transformer_blocks_0_attn1_to_q.lora_down.weight",
      "lora_unet_input_blocks_4_1_transformer_blocks_0_attn1_to_q.lora_up.weight",
      "lora_unet_output_blocks_1_1_transformer_blocks_0_attn2_to_out_0.alpha",
      "lora_unet_output_blocks_1_1_transformer_blocks_0_attn2_to_out_0.lora_down.weight",
      "lora_unet_output_blocks_1_1_transformer_blocks_0_attn2_to_out_0.lora_up.weight",
    ]);
    const down = tensors.get("lora_unet_input_blocks_4_1_transformer_blocks_0_attn1_to_q.lora_down.weight")!;
    expect(down).toBe(input.get(`unet.${modules[0]}.lora.down.weight`));
    const alpha = tensors.get("lora_unet_input_blocks_4_1_transformer_blocks_0_attn1_to_q.alpha")!;
    expect([alpha.dtype, alpha.shape]).toEqual(["F32", []]);
    expect(new DataView(alpha.data.buffer, alpha.data.byteOffset).getFloat32(0, true)).toBe(4);
  });

  it("reads the peft naming (lora_A / lora_B) too, and reports mixed ranks as none", () => {
    const input = new Map<string, Tensor>([
      [`unet.${modules[0]}.lora_A.weight`, f32([2, 8])],
      [`unet.${modules[0]}.lora_B.weight`, f32([8, 2])],
      [`unet.${modules[1]}.lora_A.weight`, f32([3, 8])],
      [`unet.${modules[1]}.lora_B.weight`, f32([8, 3])],
    ]);
    const { tensors, rank } = toKohya(input, "sd15");
    expect(rank).toBeUndefined();
    expect(tensors.get(`lora_unet_${modules[1]!.replaceAll(".", "_")}.lora_up.weight`)!.shape).toEqual([8, 3]);
  });

  it.each([
    ["text-encoder layers", new Map([["text_encoder.text_model.encoder.layers.0.self_attn.q_proj.lora_A.weight", f32([2, 8])]]), /text-encoder LoRA layers/],
    ["a foreign key", new Map([["lora_unet_x.lora_down.weight", f32([2, 8])]]), /not a diffusers UNet LoRA weight/],
    ["half a layer", new Map([[`unet.${modules[0]}.lora.down.weight`, f32([2, 8])]]), /only half of the LoRA layer/],
    ["unpaired shapes", new Map([[`unet.${modules[0]}.lora.down.weight`, f32([2, 8])], [`unet.${modules[0]}.lora.up.weight`, f32([8, 3])]]), /do not pair/],
    ["nothing", new Map<string, Tensor>(), /no LoRA layers/],
  ])("refuses %s", (_what, input, message) => {
    expect(() => toKohya(input, "sd15")).toThrow(message);
  });
});

describe("safetensors", () => {
  it("round-trips tensors and metadata, header padded to 8 bytes", () => {
    const tensors = new Map<string, Tensor>([["b", f32([2, 3])], ["a", scalarF32(16)], ["c", { dtype: "F16", shape: [2], data: new Uint8Array([0, 60, 0, 188]) }]]);
    const bytes = serializeSafetensors(tensors, { trigger: "sks person" });
    const headerLength = Number(bytes.readBigUInt64LE(0));
    expect(headerLength % 8).toBe(0);
    const parsed = parseSafetensors(bytes);
    expect(parsed.metadata).toEqual({ trigger: "sks person" });
    expect([...parsed.tensors.keys()]).toEqual(["a", "b", "c"]);
    for (const [name, t] of tensors) {
      expect(parsed.tensors.get(name)!.shape).toEqual(t.shape);
      expect(Buffer.from(parsed.tensors.get(name)!.data)).toEqual(Buffer.from(t.data));
    }
    // Tensor data is laid out back to back in name order, with no gap (what safetensors' loader checks).
    expect(bytes.byteLength).toBe(8 + headerLength + 4 + 24 + 4);
  });

  it.each([
    ["too short", Buffer.from([1, 2, 3]), /shorter than a safetensors header/],
    ["a header past the end", Buffer.concat([Buffer.from([255, 0, 0, 0, 0, 0, 0, 0]), Buffer.from("{}")]), /past the end/],
    ["a header that is not JSON", Buffer.concat([Buffer.from([2, 0, 0, 0, 0, 0, 0, 0]), Buffer.from("{x")]), /not JSON/],
    ["offsets outside the data", withHeader({ t: { dtype: "F32", shape: [2], data_offsets: [0, 8] } }, 4), /outside the file/],
    ["a length that does not fit the shape", withHeader({ t: { dtype: "F32", shape: [3], data_offsets: [0, 8] } }, 8), /does not match its shape/],
    ["an unknown dtype", withHeader({ t: { dtype: "Q4", shape: [1], data_offsets: [0, 1] } }, 1), /unknown dtype/],
  ])("refuses %s", (_what, bytes, message) => {
    expect(() => parseSafetensors(bytes)).toThrow(message);
  });
});

function withHeader(header: unknown, dataBytes: number): Buffer {
  const json = Buffer.from(JSON.stringify(header));
  const length = Buffer.alloc(8);
  length.writeBigUInt64LE(BigInt(json.byteLength));
  return Buffer.concat([length, json, Buffer.alloc(dataBytes)]);
}

describe("kohyaMetadata", () => {
  it("names the network, its rank and the base family as kohya-trained files do", () => {
    expect(kohyaMetadata({ title: "alice-v2", pipeline: "sdxl", rank: 16, trigger: "sks person", resolution: 1024 })).toMatchObject({
      ss_network_module: "networks.lora",
      ss_network_dim: "16",
      ss_network_alpha: "16",
      ss_base_model_version: "sdxl_base_v1-0",
      "modelspec.architecture": "stable-diffusion-xl-v1-base/lora",
      "modelspec.trigger_phrase": "sks person",
    });
    expect(kohyaMetadata({ title: "a", pipeline: "sd15", rank: undefined, trigger: "t", resolution: 512 })).not.toHaveProperty("ss_network_dim");
  });
});
