"""Trainer-test fixtures: trained LoRAs shared across tests (each tiny run takes a few seconds)."""

from __future__ import annotations

import contextlib
import io
import os
import re
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

TRAINER_DIR = Path(__file__).resolve().parents[3] / "templates" / "trainer"

STEP_LINE = re.compile(r"^step=(\d+)/(\d+) loss=\d+\.\d{4} it_s=\d+\.\d{2} eta_s=\d+$")


@dataclass
class Run:
    code: int
    stdout: str
    stderr: str
    out_dir: Path
    ckpt_dir: Path

    @property
    def lines(self) -> list[str]:
        return [ln for ln in self.stdout.splitlines() if ln.strip()]

    def step_lines(self) -> list[tuple[int, int]]:
        return [tuple(map(int, m.groups())) for m in map(STEP_LINE.match, self.lines) if m]

    def phase(self, name: str) -> dict | None:
        for ln in self.lines:
            if ln.startswith(f"phase={name} ") or ln == f"phase={name}":
                return kv(ln)
        return None


def kv(line: str) -> dict:
    return dict(part.split("=", 1) for part in line.split(" ") if "=" in part)


def train_args(base, dataset, out_dir, ckpt_dir, *extra) -> list[str]:
    return [
        "--base", str(base), "--dataset", str(dataset),
        "--output-dir", str(out_dir), "--checkpoint-dir", str(ckpt_dir),
        "--resolution", "64", "--rank", "4", "--lr", "1e-2", "--seed", "42",
        "--log-every", "1", "--checkpoint-every", "2", *extra,
    ]


def run_inprocess(argv: list[str], out_dir, ckpt_dir, env: dict | None = None) -> Run:
    """`cli.run(argv)` in this process (no import cost), capturing both streams."""
    from avatar_trainer import cli

    saved = {k: os.environ.get(k) for k in (env or {})}
    os.environ.update(env or {})
    out, err = io.StringIO(), io.StringIO()
    try:
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            code = cli.run(argv)
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
    return Run(code, out.getvalue(), err.getvalue(), Path(out_dir), Path(ckpt_dir))


# The tiny models' ops are too small to gain from intra-op threads, and when the machine is busy
# (other test tiers running) OpenMP threads spin against each other: measured 13 vs 0.7 it/s on
# a loaded 2-core box. One thread keeps the trainer tests fast and steady.
TEST_THREADS = 1


@pytest.fixture(scope="package", autouse=True)
def _one_torch_thread():
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(TEST_THREADS)
    yield
    torch.set_num_threads(before)


def subprocess_env(**extra) -> dict:
    env = dict(os.environ)
    env["PYTHONPATH"] = str(TRAINER_DIR)
    env["HF_HUB_OFFLINE"] = "1"
    env["OMP_NUM_THREADS"] = str(TEST_THREADS)
    env.update(extra)
    return env


def run_module(argv: list[str], timeout: float = 300, **env) -> subprocess.CompletedProcess:
    """`python -m avatar_trainer …` exactly as the local backend / Vertex job runs it."""
    return subprocess.run([sys.executable, "-m", "avatar_trainer", *argv], capture_output=True, text=True,
                          timeout=timeout, env=subprocess_env(**env))


@pytest.fixture(scope="session")
def trained_sd15(tiny_sd15_dir, dataset_zip, tmp_path_factory) -> Run:
    d = tmp_path_factory.mktemp("run-sd15")
    run = run_inprocess(train_args(tiny_sd15_dir, dataset_zip, d / "model", d / "ckpt", "--steps", "4",
                                   "--name", "alice", "--run-id", "20260101-000000"), d / "model", d / "ckpt")
    assert run.code == 0, run.stderr
    return run


@pytest.fixture(scope="session")
def trained_sdxl(tiny_sdxl_dir, dataset_zip, tmp_path_factory) -> Run:
    d = tmp_path_factory.mktemp("run-sdxl")
    run = run_inprocess(train_args(tiny_sdxl_dir, dataset_zip, d / "model", d / "ckpt", "--steps", "4"),
                        d / "model", d / "ckpt")
    assert run.code == 0, run.stderr
    return run
