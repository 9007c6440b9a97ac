"""`avatar export --format kohya`: the file ComfyUI, AUTOMATIC1111 and diffusers load.

The kohya file is written by the CLI's own TypeScript code (src/core/kohya.ts + safetensors.ts,
run by the repo's Node with type stripping), from the diffusers file the trainer wrote. Checked:
- every layer lands on a UNet Linear by the key rules of ComfyUI's comfy/lora.py
  `model_lora_keys_unet` (`lora_unet_` + the diffusers name or the LDM name, dots → "_"; weights
  `<x>.lora_up.weight` / `<x>.lora_down.weight`, scale `<x>.alpha` / rank) and of AUTOMATIC1111's
  extensions-builtin/Lora/networks.py (`convert_diffusers_name_to_compvis`, else `lora_unet` →
  `diffusion_model`), re-implemented below from those rules — on the tiny trained models and on
  the real SD 1.5 / SDXL UNet layouts (built on the meta device: names and shapes, no weights);
- diffusers' own `load_lora_weights` loads the kohya file into the same image as the diffusers file.
"""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file, save_file

REPO = Path(__file__).resolve().parents[3]
NODE = REPO / "node_modules" / ".bin" / "node"  # the Node the repo pins (type stripping: Node >= 22.18)
WEIGHTS = "pytorch_lora_weights.safetensors"
TARGETS = ("to_q", "to_k", "to_v", "to_out.0")

_CONVERT = """
import { readFileSync, writeFileSync } from "node:fs";
import { parseSafetensors, serializeSafetensors } from "%(src)s/core/safetensors.ts";
import { kohyaMetadata, toKohya } from "%(src)s/core/kohya.ts";
const [from, pipeline, to] = process.argv.slice(1);
const k = toKohya(parseSafetensors(readFileSync(from)).tensors, pipeline);
writeFileSync(to, serializeSafetensors(k.tensors, kohyaMetadata({ title: "test", pipeline, rank: k.rank, trigger: "sks person", resolution: 64 })));
"""


def to_kohya(diffusers_file: Path, pipeline: str, out: Path) -> Path:
    """The CLI's conversion, in a Node child process."""
    assert NODE.exists(), f"{NODE} missing: run `npm ci` (the repo's Node runs the export code)"
    proc = subprocess.run([str(NODE), "--input-type=module", "-e", _CONVERT % {"src": REPO / "src"},
                           str(diffusers_file), pipeline, str(out)], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    return out


# --- the loaders' key rules, re-implemented -----------------------------------------------------

def ldm_name(module: str, layers_per_block: int) -> str | None:
    """A diffusers UNet attention-block module path → its LDM path (comfy.utils.unet_to_diffusers' layout)."""
    n = layers_per_block
    if m := re.fullmatch(r"down_blocks\.(\d+)\.attentions\.(\d+)\.(.+)", module):
        return f"input_blocks.{1 + int(m[1]) * (n + 1) + int(m[2])}.1.{m[3]}"
    if m := re.fullmatch(r"mid_block\.attentions\.0\.(.+)", module):
        return f"middle_block.1.{m[1]}"
    if m := re.fullmatch(r"up_blocks\.(\d+)\.attentions\.(\d+)\.(.+)", module):
        return f"output_blocks.{int(m[1]) * (n + 1) + int(m[2])}.1.{m[3]}"
    return None


def comfyui_key_map(linears: dict[str, tuple], layers_per_block: int) -> dict[str, str]:
    """`lora_unet_<name with _>` → module, for both namings ComfyUI maps (diffusers and LDM)."""
    key_map = {}
    for module in linears:
        key_map["lora_unet_" + module.replace(".", "_")] = module
        if ldm := ldm_name(module, layers_per_block):
            key_map["lora_unet_" + ldm.replace(".", "_")] = module
    return key_map


def a1111_compvis(key: str) -> str:
    """convert_diffusers_name_to_compvis for attention layers, then the SDXL fallback."""
    if m := re.fullmatch(r"lora_unet_down_blocks_(\d+)_attentions_(\d+)_(.+)", key):
        return f"diffusion_model_input_blocks_{1 + int(m[1]) * 3 + int(m[2])}_1_{m[3]}"
    if m := re.fullmatch(r"lora_unet_mid_block_attentions_(\d+)_(.+)", key):
        return f"diffusion_model_middle_block_1_{m[2]}"
    if m := re.fullmatch(r"lora_unet_up_blocks_(\d+)_attentions_(\d+)_(.+)", key):
        return f"diffusion_model_output_blocks_{int(m[1]) * 3 + int(m[2])}_1_{m[3]}"
    return key.replace("lora_unet", "diffusion_model", 1)


def check_kohya_file(sd: dict, linears: dict[str, tuple], layers_per_block: int, a1111: bool) -> int:
    """Every kohya layer maps onto a Linear of the UNet with matching shapes; returns the layer count."""
    key_map = comfyui_key_map(linears, layers_per_block)
    compvis = {"diffusion_model_" + ldm_name(m, layers_per_block).replace(".", "_"): m
               for m in linears if ldm_name(m, layers_per_block)}
    layers = {k.rsplit(".", 2)[0] if k.endswith(".weight") else k.rsplit(".", 1)[0] for k in sd}
    for x in layers:
        assert x.startswith("lora_unet_"), x
        assert set(k for k in sd if k.startswith(x + ".")) == {f"{x}.lora_down.weight", f"{x}.lora_up.weight",
                                                                f"{x}.alpha"}, x
        module = key_map.get(x)
        assert module is not None, f"ComfyUI maps no UNet weight to {x}"
        if a1111:
            assert compvis.get(a1111_compvis(x)) == module, f"A1111 maps {x} elsewhere"
        down, up, alpha = sd[f"{x}.lora_down.weight"], sd[f"{x}.lora_up.weight"], sd[f"{x}.alpha"]
        out_features, in_features = linears[module]
        assert down.shape == (down.shape[0], in_features) and up.shape == (out_features, down.shape[0])
        assert alpha.numel() == 1 and float(alpha) == down.shape[0]  # scale alpha / rank = 1, as trained
    return len(layers)


def unet_linears(unet) -> dict[str, tuple]:
    return {n: tuple(m.weight.shape) for n, m in unet.named_modules()
            if isinstance(m, torch.nn.Linear) and n.endswith(TARGETS)}


# --- on the trained tiny models --------------------------------------------------------------------

@pytest.fixture(params=["sd15", "sdxl"])
def exported(request, tmp_path):
    """(kind, base dir, diffusers file, kohya file) for each pipeline family."""
    kind = request.param
    run = request.getfixturevalue(f"trained_{kind}")
    base = request.getfixturevalue(f"tiny_{kind}_dir")
    kohya = to_kohya(run.out_dir / WEIGHTS, kind, tmp_path / "kohya.safetensors")
    return kind, base, run.out_dir / WEIGHTS, kohya


def _pipeline(kind, base):
    from diffusers import StableDiffusionPipeline, StableDiffusionXLPipeline

    pipe = (StableDiffusionXLPipeline if kind == "sdxl" else StableDiffusionPipeline).from_pretrained(str(base))
    pipe.set_progress_bar_config(disable=True)
    return pipe


def _image(pipe):
    return pipe("a photo of sks person", num_inference_steps=2, output_type="np",
                generator=torch.Generator().manual_seed(0)).images


def test_kohya_keys_shapes_and_alphas_fit_comfyui_and_a1111(exported):
    kind, base, diffusers_file, kohya_file = exported
    from diffusers import UNet2DConditionModel

    unet = UNet2DConditionModel.from_pretrained(str(base), subfolder="unet")
    sd = load_file(str(kohya_file))
    n = check_kohya_file(sd, unet_linears(unet), unet.config.layers_per_block,
                         # A1111's block arithmetic is SD's (two layers per block): the tiny SDXL has it,
                         # the tiny SD 1.5 (one layer per block) does not; the real layouts are checked below.
                         a1111=unet.config.layers_per_block == 2)
    assert n == len(load_file(str(diffusers_file))) // 2 == len(sd) // 3
    if kind == "sdxl":
        assert all(re.match(r"lora_unet_(input_blocks|middle_block|output_blocks)_", k) for k in sd)


def test_diffusers_loads_the_kohya_file_into_the_same_image(exported):
    kind, base, diffusers_file, kohya_file = exported
    pipe = _pipeline(kind, base)
    plain = _image(pipe)
    pipe.load_lora_weights(str(diffusers_file.parent), weight_name=diffusers_file.name)
    as_trained = _image(pipe)
    assert abs(as_trained - plain).max() > 1e-3  # the LoRA changes the image: the comparison means something

    pipe = _pipeline(kind, base)
    pipe.load_lora_weights(str(kohya_file.parent), weight_name=kohya_file.name)
    assert sum(1 for n, _ in pipe.unet.named_parameters() if ".lora_" in n) == len(load_file(str(diffusers_file)))
    torch.testing.assert_close(_image(pipe), as_trained, rtol=0, atol=1e-5)

    # The alphas are read: the same file with alpha = 2 x rank gives another image.
    doubled = {k: (v * 2 if k.endswith(".alpha") else v) for k, v in load_file(str(kohya_file)).items()}
    save_file(doubled, str(kohya_file.with_name("doubled.safetensors")))
    pipe = _pipeline(kind, base)
    pipe.load_lora_weights(str(kohya_file.parent), weight_name="doubled.safetensors")
    assert abs(_image(pipe) - as_trained).max() > 1e-4


# --- on the real SD 1.5 and SDXL layouts -----------------------------------------------------------

REAL_UNETS = {
    # stable-diffusion-v1-5/stable-diffusion-v1-5 unet/config.json (the values that shape the layers)
    "sd15": dict(block_out_channels=(320, 640, 1280, 1280), layers_per_block=2, cross_attention_dim=768,
                 attention_head_dim=8, sample_size=64,
                 down_block_types=("CrossAttnDownBlock2D",) * 3 + ("DownBlock2D",),
                 up_block_types=("UpBlock2D",) + ("CrossAttnUpBlock2D",) * 3),
    # stabilityai/stable-diffusion-xl-base-1.0 unet/config.json
    "sdxl": dict(block_out_channels=(320, 640, 1280), layers_per_block=2, cross_attention_dim=2048,
                 attention_head_dim=(5, 10, 20), transformer_layers_per_block=(1, 2, 10), use_linear_projection=True,
                 addition_embed_type="text_time", addition_time_embed_dim=256,
                 projection_class_embeddings_input_dim=2816, sample_size=128,
                 down_block_types=("DownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D"),
                 up_block_types=("CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "UpBlock2D")),
}


@pytest.mark.parametrize("kind, layers", [("sd15", 128), ("sdxl", 560)])
def test_kohya_names_fit_comfyui_and_a1111_on_the_real_unet_layouts(kind, layers, tmp_path):
    from diffusers import UNet2DConditionModel

    with torch.device("meta"):  # layer names and shapes only: no 3-10 GB of weights
        unet = UNet2DConditionModel(**REAL_UNETS[kind])
    linears = unet_linears(unet)
    assert len(linears) == layers
    rank = 2  # a small LoRA over every attention projection, named as the trainer names them
    lora = {}
    for module, (out_features, in_features) in linears.items():
        lora[f"unet.{module}.lora.down.weight"] = torch.zeros(rank, in_features)
        lora[f"unet.{module}.lora.up.weight"] = torch.zeros(out_features, rank)
    save_file(lora, str(tmp_path / WEIGHTS))
    sd = load_file(str(to_kohya(tmp_path / WEIGHTS, kind, tmp_path / "kohya.safetensors")))
    assert check_kohya_file(sd, linears, layers_per_block=2, a1111=True) == layers
