// diffusers-format LoRA → kohya format: the `lora_unet_…` file that ComfyUI and AUTOMATIC1111 load.
// Pure key renaming plus one `.alpha` tensor per layer; the weight bytes are copied as they are.
//
// What the loaders accept (the facts this mapping is written against):
// - ComfyUI, comfy/lora.py `model_lora_keys_unet`: for every UNet weight it maps
//   `lora_unet_<diffusers key, dots → _>` (diffusers names, through comfy.utils.unet_to_diffusers)
//   and `lora_unet_<ldm key without "diffusion_model.", dots → _>` (input_blocks/middle_block/
//   output_blocks names); `load_lora` then reads `<x>.lora_up.weight`, `<x>.lora_down.weight` and
//   `<x>.alpha`, and scales up @ down by alpha / rank (rank = lora_down's first dimension).
// - AUTOMATIC1111, extensions-builtin/Lora/networks.py: `convert_diffusers_name_to_compvis` turns
//   `lora_unet_down_blocks_<b>_attentions_<a>_<rest>` into `diffusion_model_input_blocks_<1+3b+a>_1_<rest>`
//   (mid_block → middle_block_1, up_blocks → output_blocks_<3b+a>_1), and for SDXL ("SDXL loras seem
//   to already have correct compvis keys") replaces `lora_unet` by `diffusion_model`; network_lora.py
//   reads lora_up / lora_down / alpha the same way.
// - diffusers 0.32 `load_lora_weights` detects `lora_unet_` keys, maps SDXL's input_blocks names back
//   with the UNet config (`_maybe_map_sgm_blocks_to_diffusers`) and applies alpha / rank.
// So SD 1.x keeps the diffusers module names (what kohya's sd-scripts writes for SD 1.x) and SDXL gets
// the LDM names (what sd-scripts writes for SDXL), each accepted by all three.
import { scalarF32, type Tensor } from "./safetensors.ts";

export type LoraPipeline = "sd15" | "sdxl";

/** Layers per block of the SDXL UNet (and of the tiny test SDXL): fixes the LDM block numbering. */
const SDXL_LAYERS_PER_BLOCK = 2;

export class KohyaError extends Error {
  override name = "KohyaError";
}

// diffusers' save_lora_weights writes `unet.<module>.lora.down.weight` (older) or
// `unet.<module>.lora_A.weight` (peft naming); both are accepted.
const DIFFUSERS_KEY = /^unet\.(.+)\.(lora\.down|lora\.up|lora_A|lora_B)\.weight$/;

/** SDXL: a diffusers UNet module path inside an attention block → its LDM (sgm) path. */
function sdxlModule(path: string): string {
  const n = SDXL_LAYERS_PER_BLOCK;
  let m = /^down_blocks\.(\d+)\.attentions\.(\d+)\.(.+)$/.exec(path);
  if (m && Number(m[2]) < n) return `input_blocks.${1 + Number(m[1]) * (n + 1) + Number(m[2])}.1.${m[3]}`;
  m = /^mid_block\.attentions\.0\.(.+)$/.exec(path);
  if (m) return `middle_block.1.${m[1]}`;
  m = /^up_blocks\.(\d+)\.attentions\.(\d+)\.(.+)$/.exec(path);
  if (m && Number(m[2]) <= n) return `output_blocks.${Number(m[1]) * (n + 1) + Number(m[2])}.1.${m[3]}`;
  throw new KohyaError(`has a LoRA layer on "${path}", outside the SDXL attention blocks this export maps`);
}

/** The kohya module name (`lora_unet_…`, no suffix) of a diffusers UNet module path. */
export function kohyaModuleName(path: string, pipeline: LoraPipeline): string {
  const named = pipeline === "sdxl" ? sdxlModule(path) : path;
  return `lora_unet_${named.replaceAll(".", "_")}`;
}

export interface KohyaConversion {
  tensors: Map<string, Tensor>;
  /** LoRA layers (modules) converted. */
  modules: number;
  /** The rank of every layer, when they share one (else undefined). */
  rank: number | undefined;
}

/**
 * Converts the tensors of a diffusers-format UNet LoRA. alpha = rank for every layer: diffusers
 * loads a file without alphas at scale 1 (and our trainer trains with lora_alpha = rank), and
 * kohya loaders scale by alpha / rank, so both files give the same weights.
 */
export function toKohya(tensors: ReadonlyMap<string, Tensor>, pipeline: LoraPipeline): KohyaConversion {
  const layers = new Map<string, { down?: Tensor; up?: Tensor }>();
  for (const [key, tensor] of tensors) {
    const m = DIFFUSERS_KEY.exec(key);
    if (!m) {
      if (key.startsWith("text_encoder")) throw new KohyaError(`has text-encoder LoRA layers ("${key}"); only UNet LoRAs are exported`);
      throw new KohyaError(`has "${key}", which is not a diffusers UNet LoRA weight`);
    }
    const layer = layers.get(m[1]!) ?? {};
    layer[m[2] === "lora.down" || m[2] === "lora_A" ? "down" : "up"] = tensor;
    layers.set(m[1]!, layer);
  }
  if (layers.size === 0) throw new KohyaError("holds no LoRA layers");
  const out = new Map<string, Tensor>();
  const ranks = new Set<number>();
  for (const [path, { down, up }] of layers) {
    if (!down || !up) throw new KohyaError(`has only half of the LoRA layer "${path}" (${down ? "no up" : "no down"} weight)`);
    const rank = down.shape[0];
    if (down.shape.length !== 2 || up.shape.length !== 2 || rank === undefined || up.shape[1] !== rank) {
      throw new KohyaError(`has LoRA layer "${path}" with shapes down [${down.shape.join(", ")}] and up [${up.shape.join(", ")}] that do not pair`);
    }
    const name = kohyaModuleName(path, pipeline);
    if (out.has(`${name}.alpha`)) throw new KohyaError(`maps two layers to ${name}`);
    out.set(`${name}.lora_down.weight`, down);
    out.set(`${name}.lora_up.weight`, up);
    out.set(`${name}.alpha`, scalarF32(rank));
    ranks.add(rank);
  }
  return { tensors: out, modules: layers.size, rank: ranks.size === 1 ? [...ranks][0] : undefined };
}

/** safetensors metadata kohya-trained files carry, so UIs show what the LoRA is and is for. */
export function kohyaMetadata(input: { title: string; pipeline: LoraPipeline; rank: number | undefined; trigger: string; resolution: number }): Record<string, string> {
  const sdxl = input.pipeline === "sdxl";
  return {
    ss_network_module: "networks.lora",
    ...(input.rank !== undefined ? { ss_network_dim: String(input.rank), ss_network_alpha: String(input.rank) } : {}),
    ss_base_model_version: sdxl ? "sdxl_base_v1-0" : "sd_v1",
    ss_output_name: input.title,
    "modelspec.sai_model_spec": "1.0.0",
    "modelspec.architecture": sdxl ? "stable-diffusion-xl-v1-base/lora" : "stable-diffusion-v1/lora",
    "modelspec.title": input.title,
    "modelspec.trigger_phrase": input.trigger,
    "modelspec.resolution": `${input.resolution}x${input.resolution}`,
  };
}
