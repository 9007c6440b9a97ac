"""Base-model loading and text conditioning for the two pipeline families (SD 1.x, SDXL).

Components are loaded one by one (not as a pipeline) so that frozen parts can be cast,
moved and freed independently: on a 16 GB T4 the text encoders and the VAE are dropped as
soon as their outputs are cached, leaving the GPU to the UNet.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path

from .errors import TrainerError

PIPELINE_CLASSES = {
    "StableDiffusionPipeline": "sd15",
    "StableDiffusionXLPipeline": "sdxl",
}


def base_is_local(base: str) -> bool:
    return os.path.isdir(base)


def read_model_index(base: str) -> dict:
    if base_is_local(base):
        path = Path(base) / "model_index.json"
        if not path.is_file():
            raise TrainerError(f"base model directory {base} has no model_index.json (not a diffusers pipeline)")
    else:
        try:
            from huggingface_hub import hf_hub_download

            path = Path(hf_hub_download(base, "model_index.json"))
        except Exception as e:
            raise TrainerError(f"cannot fetch model_index.json of base model {base!r}: {_short(e)}") from None
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as e:
        raise TrainerError(f"model_index.json of base model {base} is unreadable: {e}") from None


def detect_pipeline(base: str) -> str:
    """`sd15` or `sdxl` from model_index.json's `_class_name`."""
    cls = read_model_index(base).get("_class_name", "")
    kind = PIPELINE_CLASSES.get(cls)
    if kind is None:
        raise TrainerError(
            f"base model {base} is a {cls or 'unknown'} pipeline; supported: "
            f"{', '.join(PIPELINE_CLASSES)} (or pass --pipeline sd15|sdxl)"
        )
    return kind


def _short(e: Exception) -> str:
    text = str(e).strip().splitlines()
    return text[0] if text else type(e).__name__


@dataclass
class Components:
    kind: str
    unet: object
    vae: object
    noise_scheduler: object
    tokenizers: list = field(default_factory=list)
    text_encoders: list = field(default_factory=list)


def load_components(base: str, kind: str, vae_source: str | None, device, weight_dtype, vae_dtype) -> Components:
    """Load tokenizer(s), text encoder(s), VAE, UNet and a DDPM training scheduler, all frozen."""
    from diffusers import AutoencoderKL, DDPMScheduler, UNet2DConditionModel
    from transformers import CLIPTextModel, CLIPTextModelWithProjection, CLIPTokenizer

    def load(what, fn, *args, **kwargs):
        try:
            return fn(*args, **kwargs)
        except Exception as e:
            raise TrainerError(f"cannot load {what} of base model {base}: {_short(e)}") from None

    src = str(base)
    # The DDPM forward process (add_noise) is what training needs, whatever scheduler the
    # pipeline samples with; its betas come from the base model's scheduler config.
    noise_scheduler = load("scheduler", DDPMScheduler.from_pretrained, src, subfolder="scheduler")
    tokenizers = [load("tokenizer", CLIPTokenizer.from_pretrained, src, subfolder="tokenizer")]
    text_encoders = [load("text_encoder", CLIPTextModel.from_pretrained, src, subfolder="text_encoder",
                          torch_dtype=weight_dtype)]
    if kind == "sdxl":
        tokenizers.append(load("tokenizer_2", CLIPTokenizer.from_pretrained, src, subfolder="tokenizer_2"))
        text_encoders.append(load("text_encoder_2", CLIPTextModelWithProjection.from_pretrained, src,
                                  subfolder="text_encoder_2", torch_dtype=weight_dtype))
    if vae_source:
        vae = load(f"VAE {vae_source}", AutoencoderKL.from_pretrained, vae_source, torch_dtype=vae_dtype)
    else:
        vae = load("vae", AutoencoderKL.from_pretrained, src, subfolder="vae", torch_dtype=vae_dtype)
    unet = load("unet", UNet2DConditionModel.from_pretrained, src, subfolder="unet", torch_dtype=weight_dtype)

    for m in (*text_encoders, vae, unet):
        m.requires_grad_(False)
        m.to(device)
    for m in (*text_encoders, vae):
        m.eval()
    return Components(kind=kind, unet=unet, vae=vae, noise_scheduler=noise_scheduler,
                      tokenizers=tokenizers, text_encoders=text_encoders)


def encode_prompts(c: Components, prompts: list[str], device) -> list[dict]:
    """Text conditioning per prompt, computed once (text encoders are frozen).

    SD 1.x: the last hidden state. SDXL: the penultimate hidden states of both encoders
    concatenated, plus the second encoder's pooled projection (`text_embeds`).
    Returns [{"embeds": (1, 77, D), "pooled": (1, P) or None}], on CPU in fp32.
    """
    import torch

    out = []
    with torch.no_grad():
        for prompt in prompts:
            hidden, pooled = [], None
            for tok, enc in zip(c.tokenizers, c.text_encoders):
                ids = tok(prompt, padding="max_length", max_length=tok.model_max_length,
                          truncation=True, return_tensors="pt").input_ids.to(device)
                if c.kind == "sd15":
                    hidden.append(enc(ids, return_dict=False)[0])
                else:
                    res = enc(ids, output_hidden_states=True, return_dict=True)
                    hidden.append(res.hidden_states[-2])
                    pooled = res.text_embeds if hasattr(res, "text_embeds") else None
            embeds = torch.cat(hidden, dim=-1)
            out.append({
                "embeds": embeds.float().cpu(),
                "pooled": pooled.float().cpu() if pooled is not None else None,
            })
    return out


def time_ids(original_size, crop_top_left, resolution: int):
    """SDXL micro-conditioning: original (h, w) + crop (top, left) + target (h, w)."""
    import torch

    return torch.tensor([[*original_size, *crop_top_left, resolution, resolution]], dtype=torch.float32)


def build_inference_pipeline(c: Components, base: str):
    """A sampling pipeline over the already-loaded components (prior-preservation class images)."""
    from diffusers import DPMSolverMultistepScheduler, StableDiffusionPipeline, StableDiffusionXLPipeline

    scheduler = DPMSolverMultistepScheduler.from_config(c.noise_scheduler.config)
    if c.kind == "sd15":
        pipe = StableDiffusionPipeline(
            vae=c.vae, text_encoder=c.text_encoders[0], tokenizer=c.tokenizers[0], unet=c.unet,
            scheduler=scheduler, safety_checker=None, feature_extractor=None, requires_safety_checker=False,
        )
    else:
        pipe = StableDiffusionXLPipeline(
            vae=c.vae, text_encoder=c.text_encoders[0], text_encoder_2=c.text_encoders[1],
            tokenizer=c.tokenizers[0], tokenizer_2=c.tokenizers[1], unet=c.unet, scheduler=scheduler,
        )
    pipe.set_progress_bar_config(disable=True)
    return pipe
