"""Shared pytest setup for the Python tier (trainer and serving tests).

- Forces the Hugging Face libraries offline: nothing in these tests may download weights.
- Puts `templates/trainer` on sys.path, the way the job and the local backend run the trainer
  (`PYTHONPATH=templates/trainer python -m avatar_trainer …`, never pip-installed).
- Session fixtures `tiny_sd15_dir` / `tiny_sdxl_dir` / `tiny_blip_dir`: tiny random pipelines
  built once per session with `avatar_trainer.tiny`.
- `make_dataset_zip(path, n=6, size=96, seed=0)`: a zip of generated face-like JPEGs; use the
  fixture of the same name, or `from avatar_trainer.tiny import make_dataset_zip` (importing from
  `conftest` breaks as soon as a subdirectory has its own conftest.py).

Note for LoRA loading under HF_HUB_OFFLINE=1: diffusers 0.32 refuses to guess the file name, so
call `pipe.load_lora_weights(dir, weight_name="pytorch_lora_weights.safetensors")`.
- `dataset_zip`: one shared 6-image zip.
"""

from __future__ import annotations

import os
import sys
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

# The image generator lives in the tiny kit so `avatar demo` can use it too; re-exported here.
from avatar_trainer.tiny import make_dataset_zip, make_face_image  # noqa: E402

__all__ = ["make_dataset_zip", "make_face_image", "TRAINER_DIR"]


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
