"""Checkpoints and resume: a restarted job continues from its newest complete checkpoint."""

from __future__ import annotations

import json
import signal
import subprocess
import sys

import pytest
import torch
from safetensors.torch import load_file

from avatar_trainer.train import FAIL_AFTER_STEP_ENV

from .conftest import STEP_LINE, kv, run_inprocess, subprocess_env, train_args

WEIGHTS = "pytorch_lora_weights.safetensors"


def test_restart_after_failure_continues_from_checkpoint_and_matches_straight_run(
        trained_sd15, tiny_sd15_dir, dataset_zip, tmp_path):
    out, ck = tmp_path / "model", tmp_path / "ckpt"
    argv = train_args(tiny_sd15_dir, dataset_zip, out, ck, "--steps", "4")

    # First attempt dies right after the step-2 checkpoint (as a preempted VM would).
    first = run_inprocess(argv, out, ck, env={FAIL_AFTER_STEP_ENV: "2"})
    assert first.code == 1
    assert first.stderr.startswith("error: ") and first.stderr.count("\n") == 1
    assert first.step_lines() == [(1, 4), (2, 4)]
    assert (ck / "checkpoint-000002" / "COMPLETE").is_file()
    assert not (out / "avatar.json").exists() and not (out / WEIGHTS).exists()

    # A checkpoint cut short (no COMPLETE marker) must be ignored, even though it is newer.
    partial = ck / "checkpoint-000003"
    partial.mkdir()
    (partial / "lora.safetensors").write_bytes(b"half-written")

    second = run_inprocess(argv, out, ck)
    assert second.code == 0, second.stderr
    assert second.phase("resume")["step"] == "2"
    assert second.phase("train")["start"] == "2"
    assert second.step_lines() == [(3, 4), (4, 4)]  # continues, not from 0
    assert json.loads((out / "avatar.json").read_text())["steps"] == 4
    assert not partial.exists()  # the step-4 checkpoint cleaned up the abandoned one
    assert sorted(p.name for p in ck.iterdir()) == ["checkpoint-000002", "checkpoint-000004"]

    # Same seed, same data: the resumed run ends exactly where the uninterrupted one did
    # (LoRA weights, optimizer moments and RNG all restored).
    straight = load_file(str(trained_sd15.out_dir / WEIGHTS))
    resumed = load_file(str(out / WEIGHTS))
    assert straight.keys() == resumed.keys()
    for k in straight:
        torch.testing.assert_close(resumed[k], straight[k], rtol=1e-5, atol=1e-6)


def test_checkpoint_of_another_run_is_refused(trained_sd15, tiny_sd15_dir, dataset_zip, tmp_path):
    # trained_sd15's checkpoints were made with rank 4; this run asks for rank 8.
    argv = train_args(tiny_sd15_dir, dataset_zip, tmp_path / "m", trained_sd15.ckpt_dir, "--steps", "6")
    argv[argv.index("--rank") + 1] = "8"
    run = run_inprocess(argv, tmp_path / "m", trained_sd15.ckpt_dir)
    assert run.code == 1
    assert "another run's checkpoints" in run.stderr and "rank" in run.stderr
    assert "Traceback" not in run.stderr


@pytest.mark.parametrize("flag, value", [("--lr", "5e-3"), ("--seed", "7")])
def test_checkpoint_trained_with_another_lr_or_seed_is_refused(trained_sd15, tiny_sd15_dir, dataset_zip, tmp_path,
                                                               flag, value):
    """lr and seed shape every update: resuming under other values would train a mix of two runs."""
    argv = train_args(tiny_sd15_dir, dataset_zip, tmp_path / "m", trained_sd15.ckpt_dir, "--steps", "6")
    argv[argv.index(flag) + 1] = value
    run = run_inprocess(argv, tmp_path / "m", trained_sd15.ckpt_dir)
    assert run.code == 1
    assert "another run's checkpoints" in run.stderr and flag[2:] in run.stderr
    assert not (tmp_path / "m" / "avatar.json").exists()


def test_finished_checkpoint_is_exported_without_training(trained_sd15, tiny_sd15_dir, dataset_zip, tmp_path):
    """Preempted while writing outputs: the restart finds step == steps and just exports."""
    import shutil

    ck = tmp_path / "ckpt"
    shutil.copytree(trained_sd15.ckpt_dir, ck)
    out = tmp_path / "model"
    run = run_inprocess(train_args(tiny_sd15_dir, dataset_zip, out, ck, "--steps", "4"), out, ck)
    assert run.code == 0, run.stderr
    assert run.phase("resume")["step"] == "4"
    assert run.step_lines() == []
    a, b = load_file(str(out / WEIGHTS)), load_file(str(trained_sd15.out_dir / WEIGHTS))
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_sigterm_checkpoints_and_exits_nonzero_then_resumes(tiny_sdxl_dir, dataset_zip, tmp_path):
    """Spot preemption sends SIGTERM: finish the step, checkpoint, die by SIGTERM; the restart resumes."""
    out, ck = tmp_path / "model", tmp_path / "ckpt"
    argv = train_args(tiny_sdxl_dir, dataset_zip, out, ck, "--steps", "100000", "--checkpoint-every", "100000")
    proc = subprocess.Popen([sys.executable, "-m", "avatar_trainer", *argv], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, env=subprocess_env())
    lines = []
    try:
        for ln in proc.stdout:
            lines.append(ln.rstrip("\n"))
            if STEP_LINE.match(lines[-1]):
                proc.send_signal(signal.SIGTERM)
                break
        rest, err = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
    lines += rest.splitlines()
    assert proc.returncode == -signal.SIGTERM, err  # killed by the signal, after checkpointing
    assert err.startswith("error: stopped by SIGTERM at step ")
    saved = [kv(ln) for ln in lines if ln.startswith("checkpoint ")]
    assert len(saved) == 1
    step = int(saved[0]["step"])
    assert step >= 1 and (ck / f"checkpoint-{step:06d}" / "COMPLETE").is_file()
    assert not (out / "avatar.json").exists()

    # Restarted (here with a reachable step count), it picks up at that step.
    argv2 = train_args(tiny_sdxl_dir, dataset_zip, out, ck, "--steps", str(step + 2))
    run = run_inprocess(argv2, out, ck)
    assert run.code == 0, run.stderr
    assert run.phase("resume")["step"] == str(step)
    assert run.step_lines() == [(step + 1, step + 2), (step + 2, step + 2)]
    assert (out / WEIGHTS).is_file()
