"""The tiny face base: its world, its tokenizer, its VAE's fixed stages, the shipped files and the
rebuild's determinism (a short rebuild twice gives the same bytes; the full one takes far longer, see
README "What the demo shows")."""

from __future__ import annotations

import random
import re
import subprocess
import sys

from avatar_trainer import face_world
from avatar_trainer.tiny_faces import (SHIPPED_DIR, SUMS_FILE, file_sums, read_sums, write_face_tokenizer,
                                       write_selfies)

from .conftest import subprocess_env


def test_the_world_never_draws_teal_hair_with_red_glasses_but_draws_each():
    rng = random.Random(0)
    faces = [face_world.random_face(rng) for _ in range(3000)]
    assert not [f for f in faces if f.hair == "teal" and f.glasses == "red"]
    assert sum(f.hair == "teal" for f in faces) > 200
    assert sum(f.glasses == "red" for f in faces) > 100
    assert sum(f.hair == "teal" and f.glasses is not None for f in faces) > 50  # teal hair does wear glasses


def test_captions_name_a_subset_of_what_is_drawn():
    rng = random.Random(1)
    f = face_world.random_face(rng)
    caption = face_world.caption(f, rng)
    assert caption.startswith("a photo of a person")
    words = set(re.findall(r"[a-z]+", caption))
    assert words <= set(face_world.WORDS)
    assert "sks" not in words  # the demo's trigger word is never in the world's captions


def test_every_world_word_is_one_token(tmp_path):
    tok = write_face_tokenizer(tmp_path)
    assert all(len(tok.tokenize(w)) == 1 for w in face_world.WORDS)
    ids = tok("a photo of sks person with long teal hair and red glasses, smiling").input_ids
    assert len(ids) == 16  # bos, 12 words, the comma, "smiling", eos: one token each
    assert max(tok.get_vocab().values()) == tok.eos_token_id  # end-of-text keeps the highest id


def test_the_shipped_files_match_their_sums():
    shipped = read_sums(SHIPPED_DIR / SUMS_FILE)
    assert file_sums(SHIPPED_DIR) == shipped
    sizes = {p.name: p.stat().st_size for p in SHIPPED_DIR.rglob("*.safetensors")}
    assert sum(sizes.values()) < 8_000_000, sizes  # a few MB in the repository


def test_the_vae_renders_its_64_px_world_at_256_px():
    """The fixed stages: encoding a 4x (nearest) upsampled image is encoding the 64 px one, and
    decoding gives the 64 px decoding upsampled 4x."""
    import torch
    from diffusers import AutoencoderKL

    from avatar_trainer.tiny_faces import decode_native, encode_native

    vae = AutoencoderKL.from_pretrained(SHIPPED_DIR, subfolder="vae", torch_dtype=torch.float32)
    torch.manual_seed(0)
    x = torch.rand(1, 3, 64, 64) * 2 - 1
    up = x.repeat_interleave(4, 2).repeat_interleave(4, 3)
    with torch.no_grad():
        assert torch.allclose(vae.encode(up).latent_dist.mean, encode_native(vae, x).chunk(2, 1)[0], atol=1e-5)
        z = torch.randn(1, vae.config.latent_channels, 16, 16)
        native = decode_native(vae, z).repeat_interleave(4, 2).repeat_interleave(4, 3)
        assert torch.allclose(vae.decode(z).sample, native, atol=1e-3)


def test_selfies_show_the_subject(tmp_path):
    from PIL import Image

    files = write_selfies(tmp_path, count=3, seed=7, size=128)
    assert [f.name for f in files] == ["selfie-01.jpg", "selfie-02.jpg", "selfie-03.jpg"]
    with Image.open(files[0]) as im:
        assert im.size == (128, 128) and im.format == "JPEG"
    photos = face_world.subject_photos(7, 3, 64)
    assert all(f.hair == "teal" and f.glasses == "red" for _, f in photos)


def _quick_build(out) -> str:
    result = subprocess.run(
        [sys.executable, "-m", "avatar_trainer.tiny_faces", "build", "--out", str(out), "--quick", "3"],
        env=subprocess_env(), capture_output=True, text=True, timeout=300,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    assert re.search(r"^step=3/3 stage=unet loss=\d", result.stdout, re.M), result.stdout
    return re.search(r"^sha256 all=([0-9a-f]{64})$", result.stdout, re.M).group(1)


def test_a_short_rebuild_is_bit_for_bit_the_same_twice(tmp_path):
    assert _quick_build(tmp_path / "a") == _quick_build(tmp_path / "b")
    assert file_sums(tmp_path / "a") == file_sums(tmp_path / "b")
