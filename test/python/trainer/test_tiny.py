"""The offline tiny-model kit: loadable pipelines, an offline tokenizer, determinism."""

import json

import pytest
import torch

from avatar_trainer.tiny import TEXT_VOCAB_SIZE, TINY_MARKER, build_tiny_pipeline, is_tiny_model, parse_args


def test_sd15_loads_and_generates(tiny_sd15_dir):
    from diffusers import StableDiffusionPipeline

    index = json.loads((tiny_sd15_dir / "model_index.json").read_text())
    assert index["_class_name"] == "StableDiffusionPipeline"
    pipe = StableDiffusionPipeline.from_pretrained(tiny_sd15_dir)
    assert pipe.safety_checker is None
    ids = pipe.tokenizer("a photo of sks person, ünïcode & 😀").input_ids
    assert pipe.tokenizer.model_max_length == 77
    assert max(ids) < TEXT_VOCAB_SIZE
    assert pipe.tokenizer.unk_token_id not in ids[1:-1]  # byte-level vocab: nothing is unknown
    out = pipe("a photo of sks person", num_inference_steps=2, output_type="np",
               generator=torch.Generator().manual_seed(0)).images
    assert out.shape == (1, 64, 64, 3)


def test_sdxl_loads_and_generates(tiny_sdxl_dir):
    from diffusers import StableDiffusionXLPipeline

    index = json.loads((tiny_sdxl_dir / "model_index.json").read_text())
    assert index["_class_name"] == "StableDiffusionXLPipeline"
    pipe = StableDiffusionXLPipeline.from_pretrained(tiny_sdxl_dir)
    assert pipe.tokenizer_2.model_max_length == 77
    out = pipe("a photo of sks person", num_inference_steps=2, output_type="np",
               generator=torch.Generator().manual_seed(0)).images
    assert out.shape == (1, 64, 64, 3)


@pytest.mark.parametrize("kind", ["sd15", "sdxl"])
def test_vae_downsamples_by_8_like_the_real_models(kind, request):
    """256 px (the handler's minimum) is 32x32 latents, so serving tests and `avatar demo` stay cheap."""
    from diffusers import AutoencoderKL, UNet2DConditionModel

    base = request.getfixturevalue(f"tiny_{kind}_dir")
    vae = AutoencoderKL.from_pretrained(base, subfolder="vae")
    unet = UNet2DConditionModel.from_pretrained(base, subfolder="unet")
    assert 2 ** (len(vae.config.block_out_channels) - 1) == 8
    assert unet.config.sample_size * 8 == 64  # the pipelines' default size stays 64 px
    with torch.no_grad():
        latents = vae.encode(torch.zeros(1, 3, 256, 264)).latent_dist.mean
        assert latents.shape == (1, 4, 32, 33)
        assert vae.decode(latents).sample.shape == (1, 3, 256, 264)


def test_pipeline_dirs_carry_the_tiny_marker(tiny_sd15_dir, tiny_sdxl_dir, tmp_path):
    for kind, d in (("sd15", tiny_sd15_dir), ("sdxl", tiny_sdxl_dir)):
        marker = json.loads((d / TINY_MARKER).read_text())
        assert marker["avatar_tiny"] is True and marker["pipeline"] == kind
        assert is_tiny_model(d) and is_tiny_model(str(d))
    assert not is_tiny_model(tmp_path)  # a directory without the marker (e.g. a real model)
    (tmp_path / TINY_MARKER).write_text("not json")
    assert not is_tiny_model(tmp_path)
    assert not is_tiny_model("runwayml/stable-diffusion-v1-5")


def test_same_seed_same_bytes_other_seed_differs(tmp_path, tiny_sdxl_dir):
    a = build_tiny_pipeline("sdxl", tmp_path / "a", seed=0)
    c = build_tiny_pipeline("sdxl", tmp_path / "c", seed=1)
    rel = "unet/diffusion_pytorch_model.safetensors"
    assert (a / rel).read_bytes() == (tiny_sdxl_dir / rel).read_bytes()
    assert (a / rel).read_bytes() != (c / rel).read_bytes()


def test_cli_rejects_unknown_pipeline():
    with pytest.raises(SystemExit) as e:
        parse_args(["--pipeline", "flux", "--out", "x"])
    assert e.value.code == 2


def test_faces_cli_writes_a_deterministic_zip_of_jpegs(tmp_path):
    import hashlib
    import subprocess
    import sys
    import zipfile

    from .conftest import subprocess_env

    outs = []
    for name in ("a.zip", "b.zip"):
        proc = subprocess.run([sys.executable, "-m", "avatar_trainer.tiny", "--faces", "5", "--size", "72",
                               "--out", str(tmp_path / name)], capture_output=True, text=True,
                              env=subprocess_env(), timeout=60)
        assert proc.returncode == 0, proc.stderr
        assert proc.stdout.strip() == f"tiny kind=faces images=5 out={tmp_path / name}"
        outs.append(tmp_path / name)
    assert hashlib.sha256(outs[0].read_bytes()).digest() == hashlib.sha256(outs[1].read_bytes()).digest()
    from avatar_trainer.data import load_zip

    imgs = load_zip(outs[0])
    assert [i.name for i in imgs] == [f"img_{i:03d}.jpg" for i in range(5)]
    assert all(i.image.size == (72, 72) for i in imgs)
    with zipfile.ZipFile(outs[0]) as zf:
        assert len({zf.read(n) for n in zf.namelist()}) == 5  # five different pictures
