"""A Hub base is pinned to one commit, recorded in avatar.json as base_revision, loaded as fp16 variant.

These runs go through huggingface_hub's real cache resolution, offline: HF_HUB_CACHE points at a
folder laid out like the Hub cache (models--org--name/snapshots/<commit>/…, refs/<name> holding a
commit), holding the tiny model, and HF_HUB_OFFLINE=1 keeps every lookup on disk.
"""

from __future__ import annotations

import json
import shutil

import pytest

from .conftest import kv, run_module

REPO = "avatar-test/tiny-sd15"
MAIN = "a" * 40
OTHER = "b" * 40


def _snapshot(cache, commit, model_dir, fp16_dir=None, refs=()):
    repo = cache / f"models--{REPO.replace('/', '--')}"
    snap = repo / "snapshots" / commit
    shutil.copytree(model_dir, snap)
    if fp16_dir is not None:  # the repo's `*.fp16.*` weight files, beside the full-precision ones
        for f in fp16_dir.rglob("*.fp16.*"):
            (snap / f.relative_to(fp16_dir)).write_bytes(f.read_bytes())
    (repo / "refs").mkdir(parents=True, exist_ok=True)
    for ref in refs:
        (repo / "refs" / ref).write_text(commit)
    return snap


@pytest.fixture(scope="module")
def hub_cache(tiny_sd15_dir, tmp_path_factory):
    """main → a commit with fp16 variant files; another commit (not main) without them."""
    import torch
    from diffusers import StableDiffusionPipeline

    fp16 = tmp_path_factory.mktemp("fp16")
    pipe = StableDiffusionPipeline.from_pretrained(str(tiny_sd15_dir)).to(torch.float16)
    pipe.save_pretrained(str(fp16), variant="fp16")
    cache = tmp_path_factory.mktemp("hub")
    _snapshot(cache, MAIN, tiny_sd15_dir, fp16_dir=fp16, refs=["main"])
    _snapshot(cache, OTHER, tiny_sd15_dir)
    return cache


def _train(cache, dataset_zip, tmp_path, *extra):
    out, ck = tmp_path / "model", tmp_path / "ckpt"
    proc = run_module(["--base", REPO, "--dataset", str(dataset_zip), "--output-dir", str(out),
                       "--checkpoint-dir", str(ck), "--resolution", "64", "--rank", "4", "--steps", "1",
                       *extra], HF_HUB_CACHE=str(cache), HF_HUB_OFFLINE="1")
    load = next((kv(ln) for ln in proc.stdout.splitlines() if ln.startswith("phase=load ")), None)
    meta = json.loads((out / "avatar.json").read_text()) if (out / "avatar.json").exists() else None
    return proc, load, meta


def test_hub_base_records_the_commit_of_main_and_loads_the_fp16_variant(hub_cache, dataset_zip, tmp_path):
    proc, load, meta = _train(hub_cache, dataset_zip, tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert (meta["base_model"], meta["base_revision"]) == (REPO, MAIN)
    assert (load["revision"], load["variant"]) == (MAIN, "fp16")


def test_base_revision_flag_pins_another_commit(hub_cache, dataset_zip, tmp_path):
    proc, load, meta = _train(hub_cache, dataset_zip, tmp_path, "--base-revision", OTHER)
    assert proc.returncode == 0, proc.stderr
    assert meta["base_revision"] == OTHER
    assert (load["revision"], load["variant"]) == (OTHER, "none")  # that commit has no fp16 files


def test_unknown_base_revision_is_one_clear_error(hub_cache, dataset_zip, tmp_path):
    proc, load, meta = _train(hub_cache, dataset_zip, tmp_path, "--base-revision", "no-such-branch")
    assert proc.returncode == 1 and load is None and meta is None
    assert proc.stderr.startswith("error: cannot fetch model_index.json") and "no-such-branch" in proc.stderr
    assert proc.stderr.count("\n") == 1


def test_base_revision_for_a_local_directory_is_refused(tiny_sd15_dir, dataset_zip, tmp_path):
    proc = run_module(["--base", str(tiny_sd15_dir), "--base-revision", MAIN, "--dataset", str(dataset_zip),
                       "--output-dir", str(tmp_path / "m"), "--checkpoint-dir", str(tmp_path / "c")])
    assert proc.returncode == 1
    assert "--base-revision" in proc.stderr and "local directory" in proc.stderr
