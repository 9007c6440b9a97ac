"""Shared pytest setup for the Python tier (trainer and serving tests).

- Forces the Hugging Face libraries offline: nothing in these tests may download weights.
- Puts `templates/trainer` on sys.path, the way the job and the local backend run the trainer
  (`PYTHONPATH=templates/trainer python -m avatar_trainer …`, never pip-installed).
- Session fixtures `tiny_sd15_dir` / `tiny_sdxl_dir` / `tiny_blip_dir`: tiny random pipelines
  built once per session with `avatar_trainer.tiny`.
- `make_dataset_zip(path, n=6, size=96)`: a zip of generated face-like JPEGs; a fixture of the
  same name, or `from conftest import make_dataset_zip`.
- `dataset_zip`: one shared 6-image zip.
"""

from __future__ import annotations

import io
import os
import random
import sys
import zipfile
from pathlib import Path

import pytest

# Before any Hugging Face import: make accidental Hub access fail fast instead of downloading.
os.environ["HF_HUB_OFFLINE"] = "1"
os.environ["TRANSFORMERS_OFFLINE"] = "1"
os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")
os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")

REPO_ROOT = Path(__file__).resolve().parents[2]
TRAINER_DIR = REPO_ROOT / "templates" / "trainer"
if str(TRAINER_DIR) not in sys.path:
    sys.path.insert(0, str(TRAINER_DIR))


def make_face_image(seed: int, size: int = 96):
    """A synthetic 'selfie': coloured background, skin-toned oval, eyes, brows, mouth, hair.

    Varies with `seed` (colours, position, scale) so images differ like a real dataset does.
    """
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
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_DEFLATED) as zf:
        for i in range(n):
            buf = io.BytesIO()
            make_face_image(seed * 1000 + i, size).save(buf, format="JPEG", quality=92)
            zf.writestr(f"img_{i:03d}.jpg", buf.getvalue())
    return path


@pytest.fixture(scope="session", name="make_dataset_zip")
def _make_dataset_zip_fixture():
    """The `make_dataset_zip(path, n=6, size=96, seed=0)` helper as a fixture (no import needed)."""
    return make_dataset_zip


@pytest.fixture(scope="session")
def tiny_sd15_dir(tmp_path_factory) -> Path:
    from avatar_trainer.tiny import build_tiny_pipeline

    return build_tiny_pipeline("sd15", tmp_path_factory.mktemp("tiny-sd15"), seed=0)


@pytest.fixture(scope="session")
def tiny_sdxl_dir(tmp_path_factory) -> Path:
    from avatar_trainer.tiny import build_tiny_pipeline

    return build_tiny_pipeline("sdxl", tmp_path_factory.mktemp("tiny-sdxl"), seed=0)


@pytest.fixture(scope="session")
def tiny_blip_dir(tmp_path_factory) -> Path:
    from avatar_trainer.tiny import build_tiny_blip

    return build_tiny_blip(tmp_path_factory.mktemp("tiny-blip"), seed=0)


@pytest.fixture(scope="session")
def dataset_zip(tmp_path_factory) -> Path:
    """A shared 6-image 96 px dataset zip."""
    return make_dataset_zip(tmp_path_factory.mktemp("dataset") / "dataset.zip", n=6, size=96)
