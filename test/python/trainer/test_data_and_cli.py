"""Bad data and bad arguments fail fast with one clear line; locations resolve like on Vertex."""

from __future__ import annotations

import io
import os
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from avatar_trainer import cli, data
from avatar_trainer.errors import TrainerError
from avatar_trainer.paths import gs_to_fuse, resolve_location
from avatar_trainer.tiny import make_face_image

from .conftest import run_inprocess, run_module, subprocess_env, train_args


def _jpeg(seed=0, size=64) -> bytes:
    buf = io.BytesIO()
    make_face_image(seed, size).save(buf, format="JPEG")
    return buf.getvalue()


def _zip(path: Path, entries: dict[str, bytes]) -> Path:
    with zipfile.ZipFile(path, "w") as zf:
        for name, blob in entries.items():
            zf.writestr(name, blob)
    return path


def _bad(tmp_path, name) -> Path:
    """Each kind of broken dataset, by name."""
    p = tmp_path / f"{name}.zip"
    if name == "empty":
        _zip(p, {})
    elif name == "only-junk":
        _zip(p, {"__MACOSX/._img.jpg": b"x", ".DS_Store": b"x", "photos/": b""})
    elif name == "non-image":
        _zip(p, {"img_000.jpg": _jpeg(), "notes.txt": b"hello"})
    elif name == "corrupt-image":
        _zip(p, {"img_000.jpg": _jpeg(), "img_001.jpg": b"\xff\xd8\xff\xe0 not really a jpeg"})
    elif name == "not-a-zip":
        p.write_bytes(os.urandom(4096))
    elif name == "truncated":
        good = _zip(tmp_path / "good.zip", {f"img_{i}.jpg": _jpeg(i) for i in range(3)}).read_bytes()
        p.write_bytes(good[: len(good) // 2])
    elif name == "bad-crc":
        blob = bytearray(_zip(tmp_path / "one.zip", {"img_000.jpg": _jpeg()}).read_bytes())
        blob[60] ^= 0xFF  # flip a byte inside the stored file data
        p.write_bytes(bytes(blob))
    return p


BAD = {
    "empty": "is empty",
    "only-junk": "is empty",
    "non-image": "'notes.txt' is not an image",
    "corrupt-image": "'img_001.jpg' is not a readable image",
    "not-a-zip": "is not a zip archive",
    "truncated": "is not a zip archive",
    "bad-crc": "corrupt",
}


@pytest.mark.parametrize("kind", sorted(BAD))
def test_bad_dataset_is_a_clear_error_exit_1(kind, tmp_path, tiny_sd15_dir):
    ds = _bad(tmp_path, kind)
    run = run_inprocess(train_args(tiny_sd15_dir, ds, tmp_path / "m", tmp_path / "c", "--steps", "2"),
                        tmp_path / "m", tmp_path / "c")
    assert run.code == 1
    assert run.stderr.startswith("error: ") and run.stderr.count("\n") == 1, run.stderr
    assert BAD[kind] in run.stderr
    assert "Traceback" not in run.stderr
    assert run.phase("load") is None  # failed before loading any model
    assert not (tmp_path / "m" / "avatar.json").exists()


def test_bad_dataset_through_python_m_exits_nonzero(tmp_path, tiny_sd15_dir):
    ds = _bad(tmp_path, "not-a-zip")
    proc = run_module(train_args(tiny_sd15_dir, ds, tmp_path / "m", tmp_path / "c", "--steps", "2"))
    assert proc.returncode == 1
    assert proc.stderr.startswith("error: dataset ") and "is not a zip archive" in proc.stderr
    assert proc.stderr.count("\n") == 1
    # --verbose adds the traceback.
    proc = run_module(train_args(tiny_sd15_dir, ds, tmp_path / "m", tmp_path / "c", "--verbose"))
    assert proc.returncode == 1 and "Traceback" in proc.stderr


def test_missing_dataset(tmp_path, tiny_sd15_dir):
    run = run_inprocess(train_args(tiny_sd15_dir, tmp_path / "nope.zip", tmp_path / "m", tmp_path / "c"),
                        tmp_path / "m", tmp_path / "c")
    assert run.code == 1 and "dataset not found" in run.stderr


def test_junk_entries_are_ignored_and_images_sorted(tmp_path):
    p = _zip(tmp_path / "d.zip", {"b.png": b"", "__MACOSX/._a.jpg": b"x", "a.jpg": _jpeg(1)})
    with zipfile.ZipFile(p, "w") as zf:  # rewrite with a real PNG for b.png
        buf = io.BytesIO()
        make_face_image(2, 50).save(buf, format="PNG")
        zf.writestr("b.png", buf.getvalue())
        zf.writestr("__MACOSX/._a.jpg", b"x")
        zf.writestr("a.jpg", _jpeg(1, 70))
    imgs = data.load_zip(p)
    assert [i.name for i in imgs] == ["a.jpg", "b.png"]
    assert [i.original_size for i in imgs] == [(70, 70), (50, 50)]


def test_center_crop_resize_and_flip():
    from PIL import Image

    img = Image.new("RGB", (300, 200), (0, 0, 0))
    img.paste((255, 0, 0), (0, 0, 150, 200))  # left half red
    plain = data.center_crop_resize(img, 64, (200, 300))
    flipped = data.center_crop_resize(img, 64, (200, 300), flip=True)
    assert plain.image.size == flipped.image.size == (64, 64)
    assert plain.original_size == (200, 300)
    # short side 200 → 64: width 96, a 16 px crop on the left; mirrored for the flipped view.
    assert plain.crop_top_left == (0, 16) and flipped.crop_top_left == (0, 16)
    assert plain.image.getpixel((2, 32))[0] > 200 and flipped.image.getpixel((61, 32))[0] > 200
    portrait = data.center_crop_resize(Image.new("RGB", (100, 300)), 64, (300, 100))
    assert portrait.crop_top_left == (64, 0)


# --- arguments -------------------------------------------------------------------------------

REQUIRED = ["--dataset", "d.zip", "--base", "some/model", "--output-dir", "o", "--checkpoint-dir", "c"]


@pytest.mark.parametrize("argv", [
    [],
    ["--base", "x", "--output-dir", "o", "--checkpoint-dir", "c"],  # no --dataset
    REQUIRED + ["--pipeline", "flux"],
    REQUIRED + ["--steps", "0"],
    REQUIRED + ["--resolution", "100"],
    REQUIRED + ["--rank", "-1"],
    REQUIRED + ["--lr", "0"],
    REQUIRED + ["--caption", "llava"],
    REQUIRED + ["--mixed-precision", "fp8"],
    REQUIRED + ["--token", "two words"],
    REQUIRED + ["--dataset-sha256", "xyz"],
    REQUIRED + ["--mask-weight", "1.5"],
    REQUIRED + ["--mask-weight", "-0.1"],
    REQUIRED + ["--samples-every", "-1"],
    REQUIRED + ["--sample-steps", "0"],
])
def test_bad_arguments_exit_2(argv, capsys):
    with pytest.raises(SystemExit) as e:
        cli.run(argv)
    assert e.value.code == 2
    assert "error:" in capsys.readouterr().err


def test_output_dirs_fall_back_to_vertex_env(monkeypatch, capsys):
    argv = ["--dataset", "d.zip", "--base", "m/x"]
    monkeypatch.delenv("AIP_MODEL_DIR", raising=False)
    monkeypatch.delenv("AIP_CHECKPOINT_DIR", raising=False)
    with pytest.raises(SystemExit) as e:
        cli.parse_args(argv)
    assert e.value.code == 2 and "AIP_MODEL_DIR" in capsys.readouterr().err
    monkeypatch.setenv("AIP_MODEL_DIR", "gs://b/runs/1/model/")
    monkeypatch.setenv("AIP_CHECKPOINT_DIR", "gs://b/runs/1/checkpoints/")
    args = cli.parse_args(argv)
    assert (args.output_dir, args.checkpoint_dir) == ("gs://b/runs/1/model/", "gs://b/runs/1/checkpoints/")
    assert (args.steps, args.rank, args.lr, args.token, args.class_word, args.caption, args.seed) == (
        1000, 16, 1e-4, "sks", "person", "none", 42)
    args = cli.parse_args(argv + ["--output-dir", "/x"])
    assert args.output_dir == "/x"


def test_gs_uris_map_to_the_fuse_mount(monkeypatch, tmp_path):
    monkeypatch.setenv("AVATAR_GCS_FUSE_ROOT", str(tmp_path / "gcs"))
    assert gs_to_fuse("gs://bucket/a/b.zip") == tmp_path / "gcs" / "bucket" / "a" / "b.zip"
    with pytest.raises(TrainerError, match="not mounted"):
        resolve_location("gs://bucket/a/b.zip", "dataset")
    (tmp_path / "gcs" / "bucket").mkdir(parents=True)
    assert resolve_location("gs://bucket/runs/1/model/", "output dir") == tmp_path / "gcs" / "bucket" / "runs" / "1" / "model"
    with pytest.raises(TrainerError, match="bucket not found"):
        resolve_location("gs://other/x", "dataset")
    with pytest.raises(TrainerError, match="invalid Cloud Storage URI"):
        gs_to_fuse("gs://")


def test_training_from_gs_dataset_and_env_dirs(monkeypatch, tmp_path, tiny_sd15_dir, dataset_zip):
    """The Vertex shape: gs:// dataset, AIP_* gs:// output dirs, all through the FUSE mount."""
    import shutil

    root = tmp_path / "gcs"
    (root / "bkt" / "avatar" / "me" / "datasets").mkdir(parents=True)
    sha = "ab" * 32
    shutil.copy(dataset_zip, root / "bkt" / "avatar" / "me" / "datasets" / f"{sha}.zip")
    env = {"AVATAR_GCS_FUSE_ROOT": str(root), "AIP_MODEL_DIR": "gs://bkt/avatar/me/runs/r1/model/",
           "AIP_CHECKPOINT_DIR": "gs://bkt/avatar/me/runs/r1/checkpoints/"}
    for k, v in env.items():
        monkeypatch.setenv(k, v)
    argv = ["--dataset", f"gs://bkt/avatar/me/datasets/{sha}.zip", "--base", str(tiny_sd15_dir),
            "--steps", "1", "--resolution", "64", "--rank", "2"]
    out = root / "bkt" / "avatar" / "me" / "runs" / "r1" / "model"
    run = run_inprocess(argv, out, root)
    assert run.code == 0, run.stderr
    import json

    meta = json.loads((out / "avatar.json").read_text())
    assert meta["dataset_sha256"] == sha  # taken from the content-addressed file name
    assert (out / "pytorch_lora_weights.safetensors").is_file()


def test_help_and_arg_errors_do_not_import_torch(tmp_path):
    code = ("import sys, avatar_trainer.cli as c\n"
            "try:\n    c.run(['--help'])\nexcept SystemExit as e:\n    assert e.code == 0\n"
            "print('torch' in sys.modules, 'diffusers' in sys.modules)")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=subprocess_env(),
                          timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip().splitlines()[-1] == "False False"
    assert "--caption-model" in proc.stdout


def test_unsupported_base_model_is_a_clear_error(tmp_path, dataset_zip):
    base = tmp_path / "base"
    base.mkdir()
    (base / "model_index.json").write_text('{"_class_name": "FluxPipeline"}')
    run = run_inprocess(train_args(base, dataset_zip, tmp_path / "m", tmp_path / "c"), tmp_path / "m",
                        tmp_path / "c")
    assert run.code == 1 and "FluxPipeline" in run.stderr and "--pipeline" in run.stderr
    run = run_inprocess(train_args(tmp_path / "empty-dir-missing", dataset_zip, tmp_path / "m", tmp_path / "c"),
                        tmp_path / "m", tmp_path / "c")
    assert run.code == 1 and "neither a local directory nor a Hugging Face Hub id" in run.stderr
