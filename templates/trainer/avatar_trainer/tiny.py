"""Tiny, randomly initialised SD 1.x / SDXL pipelines (and a tiny BLIP), built fully offline.

Tests, `avatar demo` and the serving handler's tests need a *real* diffusers pipeline on disk
(`model_index.json`, `unet/`, `vae/`, `text_encoder/`, `tokenizer/`, `scheduler/`) that loads
with `from_pretrained(dir)`, but must never touch the Hugging Face Hub. The component shapes
follow the dummy components of diffusers' own pipeline tests; the CLIP tokenizer is built from
a byte-level vocabulary written here, so nothing is downloaded.

    python -m avatar_trainer.tiny --pipeline sd15 --out /tmp/tiny-sd15 [--seed 0]
    python -m avatar_trainer.tiny --pipeline sdxl --out /tmp/tiny-sdxl
    python -m avatar_trainer.tiny --blip --out /tmp/tiny-blip
    python -m avatar_trainer.tiny --faces 8 --out /tmp/faces.zip   # synthetic "selfies"

Everything is deterministic for a seed (same seed → same weights, byte for byte).

Both VAEs downsample by 8 like the real ones (64 px default size, 256 px = 32x32 latents), and a
built pipeline directory carries `avatar-tiny.json` ({"avatar_tiny": true, ...}), the marker
that lets the trainer and handler pick tiny-model CPU settings (one torch thread).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

# The tokenizer's special tokens, as in CLIP. End-of-text gets the highest id so that both
# pooling rules of CLIPTextModel (legacy "argmax id" and "first eos id") pick the same position.
BOS = "<|startoftext|>"
EOS = "<|endoftext|>"
MODEL_MAX_LENGTH = 77  # what SD pipelines pad to; must be <= the text encoder's positions (77)
TEXT_VOCAB_SIZE = 1000  # embedding rows in the tiny text encoders; every token id is below this

PIPELINES = ("sd15", "sdxl")

# The VAE downsamples by 8 like the real SD 1.x / SDXL VAEs (4 blocks), so a 256 px image is
# 32x32 latents and the UNet's attention sees 16x16 tokens: a 4-step 256 px image takes well
# under a second on one CPU thread. With a 2x VAE the same image was 128x128 latents (~4 s/step).
VAE_SCALE_FACTOR = 8
VAE_BLOCK_OUT_CHANNELS = (8, 16, 32, 32)  # the real VAE's (128, 256, 512, 512) / 16
VAE_NORM_GROUPS = 8  # must divide every block's channels (the real VAE: 32 groups of >= 4 channels)
DEFAULT_SIZE = 64  # pixels: the pipelines' default height/width (UNet sample_size * VAE_SCALE_FACTOR)

# Written next to model_index.json: says "this is a tiny random test model". Consumers (the
# trainer, the serving handler) may use it to pick CPU settings that suit tiny models only,
# e.g. one torch thread. diffusers ignores unknown files in a pipeline directory.
TINY_MARKER = "avatar-tiny.json"


def _byte_unicode_chars() -> list[str]:
    """The 256 printable stand-ins CLIP's byte-level BPE maps raw bytes to (GPT-2 scheme).

    Listing all of them (plus their end-of-word forms) means any UTF-8 prompt tokenizes
    without hitting the unknown token, with no merges needed.
    """
    printable = (
        list(range(ord("!"), ord("~") + 1))
        + list(range(ord("¡"), ord("¬") + 1))
        + list(range(ord("®"), ord("ÿ") + 1))
    )
    codes = list(printable)
    extra = 0
    for b in range(256):
        if b not in printable:
            codes.append(256 + extra)
            extra += 1
    return [chr(c) for c in codes]


def write_clip_tokenizer_files(directory: str | os.PathLike) -> Path:
    """Write vocab.json + merges.txt for a character-level CLIP tokenizer (514 ids)."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    vocab: dict[str, int] = {}
    for ch in _byte_unicode_chars():
        vocab[ch] = len(vocab)
    for ch in _byte_unicode_chars():
        vocab[ch + "</w>"] = len(vocab)
    vocab[BOS] = len(vocab)
    vocab[EOS] = len(vocab)
    (directory / "vocab.json").write_text(json.dumps(vocab, ensure_ascii=False), encoding="utf-8")
    # The slow CLIPTokenizer skips the first line of merges.txt, which must be the version header.
    # No merges: every word becomes its characters, the last one carrying "</w>".
    (directory / "merges.txt").write_text("#version: 0.2\n", encoding="utf-8")
    return directory


def make_clip_tokenizer(work_dir: str | os.PathLike):
    from transformers import CLIPTokenizer

    d = write_clip_tokenizer_files(Path(work_dir))
    tok = CLIPTokenizer(
        vocab_file=str(d / "vocab.json"),
        merges_file=str(d / "merges.txt"),
        model_max_length=MODEL_MAX_LENGTH,
    )
    assert max(tok.get_vocab().values()) < TEXT_VOCAB_SIZE
    return tok


def _clip_text_config(tokenizer, hidden_size: int, num_layers: int, projection_dim: int | None = None):
    from transformers import CLIPTextConfig

    kwargs = dict(
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
        hidden_size=hidden_size,
        intermediate_size=37,
        layer_norm_eps=1e-05,
        num_attention_heads=4,
        num_hidden_layers=num_layers,
        vocab_size=TEXT_VOCAB_SIZE,
        max_position_embeddings=MODEL_MAX_LENGTH,
        hidden_act="gelu",
    )
    if projection_dim is not None:
        kwargs["projection_dim"] = projection_dim
    return CLIPTextConfig(**kwargs)


def _tiny_vae(seed: int):
    """An SD-shaped KL VAE (4 latent channels, 4 blocks = 8x downsampling) with a handful of channels.

    The same for both families, as the real SD 1.x and SDXL VAEs share their architecture.
    """
    import torch
    from diffusers import AutoencoderKL

    n = len(VAE_BLOCK_OUT_CHANNELS)
    assert 2 ** (n - 1) == VAE_SCALE_FACTOR
    assert all(c % VAE_NORM_GROUPS == 0 for c in VAE_BLOCK_OUT_CHANNELS)
    torch.manual_seed(seed)
    return AutoencoderKL(
        block_out_channels=list(VAE_BLOCK_OUT_CHANNELS),
        in_channels=3,
        out_channels=3,
        down_block_types=["DownEncoderBlock2D"] * n,
        up_block_types=["UpDecoderBlock2D"] * n,
        layers_per_block=1,
        norm_num_groups=VAE_NORM_GROUPS,
        latent_channels=4,
        sample_size=DEFAULT_SIZE,
        # The real VAEs have a self-attention block in the middle; at 256 px it sees 32x32 tokens
        # of 32 channels, which costs a few milliseconds, so it stays.
        mid_block_add_attention=True,
    )


def _sd15_pipeline(seed: int, tok_dir: Path):
    import torch
    from diffusers import DDIMScheduler, StableDiffusionPipeline, UNet2DConditionModel
    from transformers import CLIPTextModel

    tokenizer = make_clip_tokenizer(tok_dir)
    # Channels (32, 64) rather than the pipeline tests' (4, 8): the LoRA tests of diffusers use
    # this size for SD, and 32 channels keep GroupNorm at its default 32 groups like the real model.
    torch.manual_seed(seed)
    unet = UNet2DConditionModel(
        block_out_channels=(32, 64),
        layers_per_block=1,
        sample_size=DEFAULT_SIZE // VAE_SCALE_FACTOR,
        in_channels=4,
        out_channels=4,
        down_block_types=("DownBlock2D", "CrossAttnDownBlock2D"),
        up_block_types=("CrossAttnUpBlock2D", "UpBlock2D"),
        cross_attention_dim=32,
    )
    scheduler = DDIMScheduler(
        beta_start=0.00085,
        beta_end=0.012,
        beta_schedule="scaled_linear",
        clip_sample=False,
        set_alpha_to_one=False,
        steps_offset=1,  # what real SD 1.5 ships; 0 makes the pipeline warn
    )
    vae = _tiny_vae(seed)
    torch.manual_seed(seed)
    text_encoder = CLIPTextModel(_clip_text_config(tokenizer, hidden_size=32, num_layers=2))
    return StableDiffusionPipeline(
        unet=unet,
        scheduler=scheduler,
        vae=vae,
        text_encoder=text_encoder,
        tokenizer=tokenizer,
        safety_checker=None,
        feature_extractor=None,
        image_encoder=None,
        requires_safety_checker=False,
    )


def _sdxl_pipeline(seed: int, tok_dir: Path):
    import torch
    from diffusers import EulerDiscreteScheduler, StableDiffusionXLPipeline, UNet2DConditionModel
    from transformers import CLIPTextModel, CLIPTextModelWithProjection

    tokenizer = make_clip_tokenizer(tok_dir / "1")
    tokenizer_2 = make_clip_tokenizer(tok_dir / "2")
    # SDXL rules: cross_attention_dim = hidden(te1) + hidden(te2) = 32 + 32;
    # projection_class_embeddings_input_dim = 6 * addition_time_embed_dim + projection_dim(te2) = 48 + 32.
    torch.manual_seed(seed)
    unet = UNet2DConditionModel(
        block_out_channels=(2, 4),
        layers_per_block=2,
        sample_size=DEFAULT_SIZE // VAE_SCALE_FACTOR,
        in_channels=4,
        out_channels=4,
        down_block_types=("DownBlock2D", "CrossAttnDownBlock2D"),
        up_block_types=("CrossAttnUpBlock2D", "UpBlock2D"),
        attention_head_dim=(2, 4),
        use_linear_projection=True,
        addition_embed_type="text_time",
        addition_time_embed_dim=8,
        transformer_layers_per_block=(1, 2),
        projection_class_embeddings_input_dim=80,
        cross_attention_dim=64,
        norm_num_groups=1,
    )
    scheduler = EulerDiscreteScheduler(
        beta_start=0.00085,
        beta_end=0.012,
        steps_offset=1,
        beta_schedule="scaled_linear",
        timestep_spacing="leading",
    )
    vae = _tiny_vae(seed)
    torch.manual_seed(seed)
    # SDXL reads hidden_states[-2], so each encoder needs at least two layers.
    text_encoder = CLIPTextModel(_clip_text_config(tokenizer, hidden_size=32, num_layers=5, projection_dim=32))
    text_encoder_2 = CLIPTextModelWithProjection(
        _clip_text_config(tokenizer_2, hidden_size=32, num_layers=5, projection_dim=32)
    )
    return StableDiffusionXLPipeline(
        unet=unet,
        scheduler=scheduler,
        vae=vae,
        text_encoder=text_encoder,
        text_encoder_2=text_encoder_2,
        tokenizer=tokenizer,
        tokenizer_2=tokenizer_2,
        image_encoder=None,
        feature_extractor=None,
    )


def build_tiny_pipeline(kind: str, out_dir: str | os.PathLike, seed: int = 0) -> Path:
    """Build a tiny `kind` ("sd15" | "sdxl") pipeline and `save_pretrained` it into `out_dir`.

    The directory is usable as `--base` for the trainer and with
    `StableDiffusionPipeline` / `StableDiffusionXLPipeline.from_pretrained(out_dir)`.
    Returns the absolute output path.
    """
    import tempfile

    if kind not in PIPELINES:
        raise ValueError(f"unknown pipeline kind {kind!r} (expected one of {', '.join(PIPELINES)})")
    out = Path(out_dir).resolve()
    with tempfile.TemporaryDirectory(prefix="avatar-tiny-tok-") as tok_dir:
        pipe = (_sd15_pipeline if kind == "sd15" else _sdxl_pipeline)(seed, Path(tok_dir))
        out.mkdir(parents=True, exist_ok=True)
        pipe.save_pretrained(str(out), safe_serialization=True)
    write_tiny_marker(out, kind, seed)
    return out


def write_tiny_marker(out_dir: str | os.PathLike, kind: str, seed: int) -> Path:
    """Write `avatar-tiny.json` ({"avatar_tiny": true, ...}) into a tiny pipeline directory."""
    path = Path(out_dir) / TINY_MARKER
    marker = {"avatar_tiny": True, "pipeline": kind, "seed": seed, "vae_scale_factor": VAE_SCALE_FACTOR,
              "default_size": DEFAULT_SIZE}
    path.write_text(json.dumps(marker, indent=2) + "\n", encoding="utf-8")
    return path


def is_tiny_model(base: str | os.PathLike) -> bool:
    """True for a local directory built by this kit (it has `avatar-tiny.json` with avatar_tiny true)."""
    try:
        marker = json.loads((Path(base) / TINY_MARKER).read_text(encoding="utf-8"))
    except (OSError, ValueError, TypeError):
        return False
    return isinstance(marker, dict) and marker.get("avatar_tiny") is True


# A few caption-ish words so that a random BLIP decoder emits words (nonsense, but words).
_BLIP_WORDS = (
    "a an the of with in on and photo picture close up woman man person girl boy lady guy "
    "smiling wearing red blue black white shirt jacket glasses hair long short standing sitting "
    "front wall park street room background light dark face portrait"
).split()
_BLIP_SPECIALS = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "[DEC]"]


def build_tiny_blip(out_dir: str | os.PathLike, seed: int = 0) -> Path:
    """Save a tiny random `BlipForConditionalGeneration` + `BlipProcessor` into `out_dir`.

    Loadable exactly like `Salesforce/blip-image-captioning-large` (`--caption-model <dir>`).
    """
    import tempfile

    import torch
    from transformers import (
        BertTokenizer,
        BlipConfig,
        BlipForConditionalGeneration,
        BlipImageProcessor,
        BlipProcessor,
    )

    out = Path(out_dir).resolve()
    vocab = _BLIP_SPECIALS + _BLIP_WORDS
    with tempfile.TemporaryDirectory(prefix="avatar-tiny-blip-") as tmp:
        vocab_file = Path(tmp) / "vocab.txt"
        vocab_file.write_text("\n".join(vocab) + "\n", encoding="utf-8")
        # [DEC] is registered as bos so `decode(..., skip_special_tokens=True)` drops it, as with the real BLIP.
        tokenizer = BertTokenizer(
            vocab_file=str(vocab_file), do_lower_case=True, model_max_length=64, bos_token="[DEC]"
        )
        # BLIP starts decoding from bos ([DEC]) and stops at sep ([SEP]).
        ids = {tok: i for i, tok in enumerate(vocab)}
        config = BlipConfig(
            text_config=dict(
                vocab_size=len(vocab),
                hidden_size=32,
                encoder_hidden_size=32,
                intermediate_size=37,
                projection_dim=32,
                num_hidden_layers=2,
                num_attention_heads=4,
                max_position_embeddings=64,
                bos_token_id=ids["[DEC]"],
                eos_token_id=ids["[SEP]"],
                sep_token_id=ids["[SEP]"],
                pad_token_id=ids["[PAD]"],
            ),
            vision_config=dict(
                hidden_size=32,
                intermediate_size=37,
                projection_dim=32,
                num_hidden_layers=2,
                num_attention_heads=4,
                image_size=32,
                patch_size=8,
            ),
            projection_dim=32,
        )
        torch.manual_seed(seed)
        model = BlipForConditionalGeneration(config).eval()
        image_processor = BlipImageProcessor(size={"height": 32, "width": 32})
        processor = BlipProcessor(image_processor=image_processor, tokenizer=tokenizer)
        out.mkdir(parents=True, exist_ok=True)
        model.save_pretrained(str(out), safe_serialization=True)
        processor.save_pretrained(str(out))
    return out


# --- synthetic selfies (for tests and `avatar demo` without real photos) -------------------

def make_face_image(seed: int, size: int = 96):
    """A synthetic 'selfie': coloured background, skin-toned oval, eyes, brows, mouth, hair.

    Varies with `seed` (colours, position, scale) so images differ like a real dataset does.
    """
    import random

    from PIL import Image, ImageDraw

    rng = random.Random(seed)
    bg = tuple(rng.randint(40, 230) for _ in range(3))
    img = Image.new("RGB", (size, size), bg)
    d = ImageDraw.Draw(img)
    skin = rng.choice([(241, 194, 125), (224, 172, 105), (198, 134, 66), (141, 85, 36), (255, 219, 172)])
    cx = size / 2 + rng.uniform(-0.08, 0.08) * size
    cy = size / 2 + rng.uniform(-0.05, 0.08) * size
    rx, ry = size * rng.uniform(0.22, 0.30), size * rng.uniform(0.30, 0.38)
    hair = tuple(rng.randint(10, 120) for _ in range(3))
    d.ellipse([cx - rx * 1.1, cy - ry * 1.15, cx + rx * 1.1, cy + ry * 0.2], fill=hair)
    d.ellipse([cx - rx, cy - ry, cx + rx, cy + ry], fill=skin)
    eye_y = cy - ry * 0.2
    for sx in (-1, 1):
        ex = cx + sx * rx * 0.42
        er = max(1.0, size * 0.03)
        d.ellipse([ex - er * 1.6, eye_y - er, ex + er * 1.6, eye_y + er], fill=(250, 250, 250))
        d.ellipse([ex - er * 0.7, eye_y - er * 0.7, ex + er * 0.7, eye_y + er * 0.7], fill=(40, 30, 20))
        d.line([ex - er * 2, eye_y - er * 2.4, ex + er * 2, eye_y - er * 2.2], fill=hair, width=max(1, size // 60))
    d.polygon([(cx, cy - ry * 0.05), (cx - rx * 0.12, cy + ry * 0.2), (cx + rx * 0.12, cy + ry * 0.2)],
              fill=tuple(max(0, c - 30) for c in skin))
    mouth_y = cy + ry * 0.45
    d.arc([cx - rx * 0.4, mouth_y - ry * 0.15, cx + rx * 0.4, mouth_y + ry * 0.15], 10, 170,
          fill=(150, 40, 50), width=max(1, size // 40))
    return img


def make_dataset_zip(path, n: int = 6, size: int = 96, seed: int = 0) -> Path:
    """Write a zip of `n` face-like JPEGs (`img_000.jpg`…) at `path`; returns the path.

    Same layout `avatar prepare` produces: flat, sorted, JPEG.
    """
    import io
    import zipfile

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    files = []
    for i in range(n):  # render first: a failure must not leave a half-written zip behind
        buf = io.BytesIO()
        make_face_image(seed * 1000 + i, size).save(buf, format="JPEG", quality=92)
        files.append((f"img_{i:03d}.jpg", buf.getvalue()))
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_DEFLATED) as zf:
        for name, blob in files:
            # Fixed timestamps: the same arguments give the same bytes (and the same sha256).
            zf.writestr(zipfile.ZipInfo(name, date_time=(2020, 1, 1, 0, 0, 0)), blob,
                        compress_type=zipfile.ZIP_DEFLATED)
    return path.resolve()



def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        prog="python -m avatar_trainer.tiny",
        description="Build a tiny randomly initialised pipeline (or BLIP captioner) offline.",
    )
    what = p.add_mutually_exclusive_group(required=True)
    what.add_argument("--pipeline", choices=PIPELINES, help="pipeline family to build")
    what.add_argument("--blip", action="store_true", help="build a tiny BLIP captioning model instead")
    what.add_argument("--faces", type=int, metavar="N",
                      help="write a zip of N synthetic face-like JPEGs to --out (a .zip path) instead")
    p.add_argument("--out", required=True, help="output directory")
    p.add_argument("--seed", type=int, default=0, help="weights / images seed (default 0)")
    p.add_argument("--size", type=int, default=96, help="--faces image size in pixels (default 96)")
    return p.parse_args(argv)


def main(args: argparse.Namespace) -> int:
    if args.faces is not None:
        out = make_dataset_zip(args.out, n=args.faces, size=args.size, seed=args.seed)
        print(f"tiny kind=faces images={args.faces} out={out}", flush=True)
    elif args.blip:
        out = build_tiny_blip(args.out, seed=args.seed)
        print(f"tiny kind=blip out={out}", flush=True)
    else:
        out = build_tiny_pipeline(args.pipeline, args.out, seed=args.seed)
        print(f"tiny kind={args.pipeline} out={out}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(parse_args()))
