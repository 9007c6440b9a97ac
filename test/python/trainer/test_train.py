"""Training on the tiny SD 1.5 and SDXL pipelines: outputs, LoRA format, logs, options."""

from __future__ import annotations

import json
import re

import pytest
import torch
from safetensors.torch import load_file

from avatar_trainer import __version__
from avatar_trainer.tiny import make_dataset_zip

from .conftest import STEP_LINE, kv, run_inprocess, run_module, train_args

WEIGHTS = "pytorch_lora_weights.safetensors"
PROMPT = "a photo of sks person"
AVATAR_KEYS = {
    "schema", "name", "run_id", "base_model", "base_revision", "pipeline", "token", "class_word", "instance_prompt",
    "resolution", "rank", "steps", "dataset_sha256", "trainer_version", "captions",
    "flip", "mask_weight", "masked_images", "samples_every",
}


def _pipeline_class(kind):
    from diffusers import StableDiffusionPipeline, StableDiffusionXLPipeline

    return StableDiffusionXLPipeline if kind == "sdxl" else StableDiffusionPipeline


def _generate(pipe):
    return pipe(PROMPT, num_inference_steps=2, output_type="np",
                generator=torch.Generator().manual_seed(0)).images


@pytest.fixture(params=["sd15", "sdxl"])
def trained(request):
    """(kind, run, base_dir) for each pipeline family."""
    run = request.getfixturevalue(f"trained_{request.param}")
    base = request.getfixturevalue(f"tiny_{request.param}_dir")
    return request.param, run, base


def test_writes_lora_avatar_json_and_captions(trained, dataset_zip):
    kind, run, base = trained
    files = sorted(p.name for p in run.out_dir.iterdir())
    assert files == ["avatar.json", "captions.json", WEIGHTS]  # no temp files left behind
    meta = json.loads((run.out_dir / "avatar.json").read_text())
    assert set(meta) == AVATAR_KEYS
    assert meta["schema"] == 1
    assert meta["pipeline"] == kind
    assert meta["base_model"] == str(base)  # absolute local path, as given
    assert meta["base_revision"] is None  # a local directory has no Hub commit
    assert meta["token"] == "sks" and meta["class_word"] == "person"
    assert meta["instance_prompt"] == PROMPT
    assert (meta["resolution"], meta["rank"], meta["steps"]) == (64, 4, 4)
    assert re.fullmatch(r"[0-9a-f]{64}", meta["dataset_sha256"])
    assert meta["trainer_version"] == __version__
    assert meta["captions"] == "none"
    captions = json.loads((run.out_dir / "captions.json").read_text())
    assert captions == {f"img_{i:03d}.jpg": PROMPT for i in range(6)}


def test_name_and_run_id_are_recorded(trained_sd15):
    meta = json.loads((trained_sd15.out_dir / "avatar.json").read_text())
    assert (meta["name"], meta["run_id"]) == ("alice", "20260101-000000")


def test_lora_file_has_only_unet_lora_keys(trained):
    kind, run, _ = trained
    sd = load_file(str(run.out_dir / WEIGHTS))
    assert sd, "empty LoRA file"
    for key, tensor in sd.items():
        assert key.startswith("unet."), key
        assert re.search(r"\.(to_q|to_k|to_v|to_out\.0)\.lora\.(down|up)\.weight$", key), key
        assert tensor.dtype == torch.float32
    downs = [t for k, t in sd.items() if ".lora.down." in k]
    assert downs and all(t.shape[0] == 4 for t in downs)  # rank 4
    # Training moved the up-projections away from their zero init.
    assert any(t.abs().max() > 0 for k, t in sd.items() if ".lora.up." in k)


def test_lora_loads_into_base_pipeline_and_changes_output(trained):
    kind, run, base = trained
    pipe = _pipeline_class(kind).from_pretrained(str(base))
    pipe.set_progress_bar_config(disable=True)
    before = _generate(pipe)
    pipe.load_lora_weights(str(run.out_dir), weight_name=WEIGHTS)
    n_file = len(load_file(str(run.out_dir / WEIGHTS)))
    n_loaded = sum(1 for name, _ in pipe.unet.named_parameters() if ".lora_" in name)
    assert n_loaded == n_file  # every tensor in the file found its layer
    after = _generate(pipe)
    assert before.shape == after.shape == (1, 64, 64, 3)
    assert abs(after - before).max() > 1e-3
    # Deterministic for a seed: the same request gives the same image.
    assert abs(_generate(pipe) - after).max() == 0


def test_log_lines_are_parseable(trained):
    kind, run, base = trained
    assert run.stderr == ""
    for ln in run.lines:
        assert re.fullmatch(r"(phase=\w+|checkpoint|samples|done|step=\d+/\d+)( [a-z_]+=\S+)*", ln), ln
    assert run.phase("data") == {"phase": "data", "images": "6", "captions": "none", "flip": "false",
                                 "faces": "0", "dataset": run.phase("data")["dataset"]}
    load = run.phase("load")
    assert (load["pipeline"], load["device"], load["dtype"], load["base"]) == (kind, "cpu", "fp32", str(base))
    assert (load["revision"], load["variant"]) == ("none", "none")  # a local directory, loaded as it is
    assert run.phase("train")["steps"] == "4"
    assert run.phase("resume") is None
    assert run.step_lines() == [(1, 4), (2, 4), (3, 4), (4, 4)]
    checkpoints = [kv(ln) for ln in run.lines if ln.startswith("checkpoint ")]
    assert [c["step"] for c in checkpoints] == ["2", "4"]
    done = kv(run.lines[-1])
    assert run.lines[-1].startswith("done ") and done["output"] == str(run.out_dir)
    assert float(done["seconds"]) > 0


def test_checkpoints_are_complete_and_pruned(trained_sd15):
    dirs = sorted(p.name for p in trained_sd15.ckpt_dir.iterdir())
    assert dirs == ["checkpoint-000002", "checkpoint-000004"]
    for d in dirs:
        names = {p.name for p in (trained_sd15.ckpt_dir / d).iterdir()}
        # Resume state (keep 2: both keep it), the LoRA in the model's format, and the samples.
        assert names == {"COMPLETE", "lora.safetensors", "optimizer.pt", "rng.pt", "state.json", WEIGHTS, "samples"}
        assert json.loads((trained_sd15.ckpt_dir / d / "state.json").read_text())["step"] == int(d[-6:])


def test_same_seed_same_lora_other_seed_differs(trained_sd15, tiny_sd15_dir, dataset_zip, tmp_path):
    base = load_file(str(trained_sd15.out_dir / WEIGHTS))
    other = run_inprocess(train_args(tiny_sd15_dir, dataset_zip, tmp_path / "m", tmp_path / "c",
                                     "--steps", "4", "--seed", "7"), tmp_path / "m", tmp_path / "c")
    assert other.code == 0, other.stderr
    sd = load_file(str(tmp_path / "m" / WEIGHTS))
    assert sd.keys() == base.keys()
    assert any(not torch.equal(sd[k], base[k]) for k in sd)


def test_options_flip_prior_preservation_gradient_checkpointing_uncached(tiny_sd15_dir, tmp_path):
    zip_path = make_dataset_zip(tmp_path / "ds.zip", n=3, size=80, seed=3)
    out, ck = tmp_path / "model", tmp_path / "ckpt"
    run = run_inprocess(train_args(tiny_sd15_dir, zip_path, out, ck, "--steps", "3", "--flip",
                                   "--prior-preservation", "--num-class-images", "2",
                                   "--class-inference-steps", "2", "--prior-loss-weight", "0.5",
                                   "--gradient-checkpointing", "--cache-latents", "no",
                                   "--class-word", "woman", "--token", "zwx"), out, ck)
    assert run.code == 0, run.stderr
    assert run.phase("data")["flip"] == "true"
    assert run.phase("class_images")["count"] == "2" and run.phase("class_images")["generated"] == "2"
    assert sorted(p.name for p in (ck / "class_images").iterdir()) == ["class_00000.jpg", "class_00001.jpg"]
    assert run.phase("cache") == {"phase": "cache", "latents": "0", "mode": "per-step"}
    assert run.step_lines()[-1] == (3, 3)
    meta = json.loads((out / "avatar.json").read_text())
    assert meta["instance_prompt"] == "a photo of zwx woman"
    assert load_file(str(out / WEIGHTS))
    # A restart reuses the class images instead of generating them again.
    run2 = run_inprocess(train_args(tiny_sd15_dir, zip_path, out, ck, "--steps", "4", "--flip",
                                    "--prior-preservation", "--num-class-images", "2",
                                    "--class-inference-steps", "2", "--prior-loss-weight", "0.5",
                                    "--class-word", "woman", "--token", "zwx"), out, ck)
    assert run2.code == 0, run2.stderr
    assert run2.phase("class_images")["generated"] == "0"
    assert run2.phase("resume")["step"] == "3"  # the last step always ends with a checkpoint


def test_must_show_cli_sdxl_four_steps(tiny_sdxl_dir, dataset_zip, tmp_path):
    """`python -m avatar_trainer --base <tiny sdxl> --dataset <zip> --steps 4 …` on CPU."""
    out, ck = tmp_path / "model", tmp_path / "ckpt"
    proc = run_module(["--base", str(tiny_sdxl_dir), "--dataset", str(dataset_zip), "--steps", "4",
                       "--output-dir", str(out), "--checkpoint-dir", str(ck), "--resolution", "64",
                       "--rank", "4", "--log-every", "1", "--name", "demo", "--run-id", "20260101-000001"])
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.splitlines()
    assert [tuple(map(int, m.groups())) for m in map(STEP_LINE.match, lines) if m] == [(1, 4), (2, 4), (3, 4),
                                                                                      (4, 4)]
    assert lines[-1].startswith(f"done output={out} seconds=")
    assert (out / WEIGHTS).is_file()
    meta = json.loads((out / "avatar.json").read_text())
    assert (meta["pipeline"], meta["name"], meta["steps"]) == ("sdxl", "demo", 4)
    print("\n" + proc.stdout)  # visible with -s: the timing of the run



def test_tiny_base_trains_on_one_thread_and_restores_the_callers(tiny_sd15_dir, dataset_zip, tmp_path, monkeypatch):
    """`avatar-tiny.json` → one torch thread while training, the caller's setting back afterwards."""
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    outer = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        out, ck = tmp_path / "m", tmp_path / "c"
        run = run_inprocess(train_args(tiny_sd15_dir, dataset_zip, out, ck, "--steps", "1"), out, ck)
        assert run.code == 0, run.stderr
        assert run.phase("load")["threads"] == "1"
        assert torch.get_num_threads() == 2
    finally:
        torch.set_num_threads(outer)


def test_thread_policy_leaves_real_models_and_explicit_omp_alone(tiny_sd15_dir, tmp_path, monkeypatch):
    from avatar_trainer.train import _torch_threads

    outer = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        monkeypatch.setenv("OMP_NUM_THREADS", "2")
        assert _torch_threads(str(tiny_sd15_dir), restore := []) == 2 and restore == []  # explicit wins
        monkeypatch.delenv("OMP_NUM_THREADS")
        (tmp_path / "model_index.json").write_text("{}")  # a local model without the marker
        assert _torch_threads(str(tmp_path), restore := []) == 2 and restore == []
        assert _torch_threads("runwayml/stable-diffusion-v1-5", restore := []) == 2 and restore == []
        assert _torch_threads(str(tiny_sd15_dir), restore := []) == 1 and len(restore) == 1
        restore[0]()
        assert torch.get_num_threads() == 2
    finally:
        torch.set_num_threads(outer)
