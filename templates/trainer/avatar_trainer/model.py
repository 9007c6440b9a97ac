"""Base-model loading and text conditioning for the two pipeline families (SD 1.x, SDXL).

Components are loaded one by one (not as a pipeline) so that frozen parts can be cast,
moved and freed independently: on a 16 GB T4 the text encoders and the VAE are dropped as
soon as their outputs are cached, leaving the GPU to the UNet.
"""

from __future__ import annotations

import json
import os
import re
from dataclasses import dataclass, field
from pathlib import Path

from .errors import TrainerError

PIPELINE_CLASSES = {
    "StableDiffusionPipeline": "sd15",
    "StableDiffusionXLPipeline": "sdxl",
}


def base_is_local(base: str) -> bool:
    return os.path.isdir(base)


_COMMIT = re.compile(r"[0-9a-f]{40}")


@dataclass(frozen=True)
class BaseRef:
    """Where the base model's files come from, exactly: a local directory, or a Hub repo at one commit.

    `revision` is the Hub commit hash every component is loaded from (None for a local directory),
    recorded in avatar.json as `base_revision` so that serving loads the very same base.
    """

    source: str
    revision: str | None
    local: bool
    snapshot: str | None = None  # the Hub cache folder of that commit (what has been downloaded so far)


def resolve_base(base: str, revision: str | None = None) -> BaseRef:
    """Pin a Hub base to one commit: the snapshot folder model_index.json resolves to names it.

    `hf_hub_download` returns `<cache>/models--org--name/snapshots/<commit>/model_index.json`,
    online (the commit the server answered with) and offline (through `refs/<revision>`), so the
    commit is known without another request; every component is then loaded at that commit.
    """
    if base_is_local(base):
        if revision:
            raise TrainerError(f"--base-revision {revision} applies to a Hub id, not to the local directory {base}")
        return BaseRef(str(Path(base).absolute()), None, True)
    try:
        from huggingface_hub import hf_hub_download

        path = Path(hf_hub_download(base, "model_index.json", revision=revision))
    except Exception as e:
        at = f" at revision {revision!r}" if revision else ""
        raise TrainerError(f"cannot fetch model_index.json of base model {base!r}{at}: {_short(e)}") from None
    commit = path.parent.name
    return BaseRef(base, commit if _COMMIT.fullmatch(commit) else None, False, str(path.parent))


def _hub_files(ref: BaseRef) -> set[str]:
    """The repo's file paths at the pinned commit: the Hub's list, or offline the cached snapshot's."""
    from huggingface_hub import constants

    if not constants.HF_HUB_OFFLINE:
        try:
            from huggingface_hub import list_repo_files

            return set(list_repo_files(ref.source, revision=ref.revision))
        except Exception:  # noqa: BLE001 - unreachable Hub: what the cache holds is all there is
            pass
    root = Path(ref.snapshot) if ref.snapshot else None
    return {p.relative_to(root).as_posix() for p in root.rglob("*") if p.is_file()} if root else set()


def has_variant(files: set[str], subfolder: str, variant: str) -> bool:
    """Whether `subfolder/` has weight files of `variant` (`model.fp16.safetensors`, `….fp16-00001-of-…`)."""
    return any(f.startswith(f"{subfolder}/") and f".{variant}" in f.rsplit("/", 1)[1] for f in files)


def read_model_index(base: BaseRef | str) -> dict:
    ref = base if isinstance(base, BaseRef) else resolve_base(base)
    if ref.local:
        path = Path(ref.source) / "model_index.json"
        if not path.is_file():
            raise TrainerError(f"base model directory {ref.source} has no model_index.json (not a diffusers pipeline)")
    else:
        try:
            from huggingface_hub import hf_hub_download

            path = Path(hf_hub_download(ref.source, "model_index.json", revision=ref.revision))
        except Exception as e:
            raise TrainerError(f"cannot fetch model_index.json of base model {ref.source!r}: {_short(e)}") from None
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as e:
        raise TrainerError(f"model_index.json of base model {ref.source} is unreadable: {e}") from None


def detect_pipeline(base: BaseRef | str) -> str:
    """`sd15` or `sdxl` from model_index.json's `_class_name`."""
    ref = base if isinstance(base, BaseRef) else resolve_base(base)
    cls = read_model_index(ref).get("_class_name", "")
    kind = PIPELINE_CLASSES.get(cls)
    if kind is None:
        raise TrainerError(
            f"base model {ref.source} is a {cls or 'unknown'} pipeline; supported: "
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
    # "fp16" when the UNet came from the Hub repo's fp16 weight files (half the download), else None.
    variant: str | None = None


# Hub repos such as stabilityai/stable-diffusion-xl-base-1.0 ship `*.fp16.safetensors` beside the
# full-precision files: half the download (~7 of ~14 GB for SDXL). The frozen base runs in fp16/bf16
# on a GPU anyway; the handler loads the same files.
HUB_VARIANT = "fp16"


def load_components(base: BaseRef | str, kind: str, vae_source: str | None, device, weight_dtype,
                    vae_dtype) -> Components:
    """Load tokenizer(s), text encoder(s), VAE, UNet and a DDPM training scheduler, all frozen.

    A Hub base is loaded at its pinned commit (`base.revision`), each weight file from the fp16
    variant where the repo has one; a local directory is loaded as it is.
    """
    from diffusers import AutoencoderKL, DDPMScheduler, UNet2DConditionModel
    from transformers import CLIPTextModel, CLIPTextModelWithProjection, CLIPTokenizer

    ref = base if isinstance(base, BaseRef) else resolve_base(base)
    src = ref.source
    pinned = {} if ref.local else {"revision": ref.revision} if ref.revision else {}
    variants: dict[str, str | None] = {}
    files = set() if ref.local else _hub_files(ref)

    def load(what, fn, *args, **kwargs):
        try:
            return fn(*args, **pinned, **kwargs)
        except Exception as e:
            raise TrainerError(f"cannot load {what} of base model {src}: {_short(e)}") from None

    def load_weights(what, fn, *args, **kwargs):
        """Weights: the Hub repo's fp16 variant when it has one, else its default files."""
        variants[what] = HUB_VARIANT if has_variant(files, kwargs["subfolder"], HUB_VARIANT) else None
        if variants[what]:
            kwargs["variant"] = variants[what]
        return load(what, fn, *args, **kwargs)

    # The DDPM forward process (add_noise) is what training needs, whatever scheduler the
    # pipeline samples with; its betas come from the base model's scheduler config.
    noise_scheduler = load("scheduler", DDPMScheduler.from_pretrained, src, subfolder="scheduler")
    tokenizers = [load("tokenizer", CLIPTokenizer.from_pretrained, src, subfolder="tokenizer")]
    text_encoders = [load_weights("text_encoder", CLIPTextModel.from_pretrained, src, subfolder="text_encoder",
                                  torch_dtype=weight_dtype)]
    if kind == "sdxl":
        tokenizers.append(load("tokenizer_2", CLIPTokenizer.from_pretrained, src, subfolder="tokenizer_2"))
        text_encoders.append(load_weights("text_encoder_2", CLIPTextModelWithProjection.from_pretrained, src,
                                          subfolder="text_encoder_2", torch_dtype=weight_dtype))
    if vae_source:
        try:
            vae = AutoencoderKL.from_pretrained(vae_source, torch_dtype=vae_dtype)
        except Exception as e:
            raise TrainerError(f"cannot load VAE {vae_source}: {_short(e)}") from None
    else:
        vae = load_weights("vae", AutoencoderKL.from_pretrained, src, subfolder="vae", torch_dtype=vae_dtype)
    unet = load_weights("unet", UNet2DConditionModel.from_pretrained, src, subfolder="unet", torch_dtype=weight_dtype)

    for m in (*text_encoders, vae, unet):
        m.requires_grad_(False)
        m.to(device)
    for m in (*text_encoders, vae):
        m.eval()
    return Components(kind=kind, unet=unet, vae=vae, noise_scheduler=noise_scheduler,
                      tokenizers=tokenizers, text_encoders=text_encoders, variant=variants.get("unet"))


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
