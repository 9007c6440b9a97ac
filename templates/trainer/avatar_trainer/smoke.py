"""`python -m avatar_trainer.smoke …`: the job `avatar doctor --smoke` runs before any GPU hour.

Runs in the training image, from the same Cloud Storage FUSE directory as the trainer, on a CPU
machine, and walks the training job's path up to its first step without downloading a model:

1. mount-list   the probe directory the CLI wrote through the JSON API (no folder placeholder
                objects) is listed through /gcs/<bucket>/…, down to the probe object — the way
                the trainer lists its checkpoints;
2. mount-read   the probe is read by path (the way the trainer opens its dataset zip) and its
                sha256 matches what the CLI uploaded;
3. trainer-import  the modules a training run imports, and the library names they use, import
                here: records torch / diffusers / transformers / peft / accelerate versions;
4. cuda         whether CUDA is visible (absent is expected on the CPU machine; never a failure);
5. mount-write  the marker (every result above) is written back through the mount atomically
                (temporary name, then rename: what checkpoints do); its arrival in the bucket is
                the CLI's proof.

One `check=<name> status=ok|fail detail=…` line per check on stdout. Exit 0 when every check
passed, 1 otherwise (2 on bad arguments), so the job's state already says which.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import platform
import sys
import time
from pathlib import Path

from . import __version__
from .errors import TrainerError
from .log import emit
from .paths import resolve_location

SCHEMA = 1
# What a training run imports (train.py, model.py, captions.py, checkpoints.py, data.py) and the
# names it takes from the libraries: an image whose versions lack one fails here, in a minute,
# rather than after the GPU machine has started.
TRAINER_MODULES = ("train", "model", "data", "captions", "checkpoints", "cli")
LIBRARY_NAMES = {
    "torch": (),
    "diffusers": ("AutoencoderKL", "DDPMScheduler", "UNet2DConditionModel", "StableDiffusionPipeline",
                  "StableDiffusionXLPipeline", "DPMSolverMultistepScheduler"),
    "transformers": ("CLIPTextModel", "CLIPTextModelWithProjection", "CLIPTokenizer", "BlipForConditionalGeneration",
                     "BlipProcessor"),
    "peft": ("LoraConfig",),
    "safetensors.torch": ("save_file", "load_file"),
    "PIL.Image": (),
    "accelerate": (),
}
VERSIONED = ("torch", "diffusers", "transformers", "peft", "accelerate", "safetensors", "PIL", "numpy")


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        prog="python -m avatar_trainer.smoke",
        description="Check the training job's path (mount, trainer import) on a CPU machine; write a marker.",
    )
    p.add_argument("--probe-dir", required=True,
                   help="directory the CLI wrote the probe under (/gcs/<bucket>/…, gs://… or a path)")
    p.add_argument("--probe", required=True,
                   help="the probe object's path inside --probe-dir, e.g. datasets/probe.bin")
    p.add_argument("--probe-sha256", required=True, help="sha256 of the probe's bytes, as the CLI uploaded them")
    p.add_argument("--marker", required=True, help="where to write marker.json (/gcs/<bucket>/…, gs://… or a path)")
    p.add_argument("--stamp", default=None, help="the smoke run's stamp, recorded in the marker")
    args = p.parse_args(argv)
    if len(args.probe_sha256) != 64 or any(c not in "0123456789abcdef" for c in args.probe_sha256):
        p.error("--probe-sha256 must be 64 lowercase hex characters")
    if args.probe.startswith("/") or ".." in args.probe.split("/"):
        p.error("--probe must be a relative path inside --probe-dir")
    return args


def _result(name: str, ok: bool, detail: str, **extra) -> dict:
    result = {"name": name, "status": "ok" if ok else "fail", "detail": detail, **extra}
    emit(check=name, status=result["status"], detail=detail)
    return result


def check_listing(probe_dir: Path, probe: str) -> dict:
    """Each directory level down to the probe shows up in its parent's listing."""
    here = probe_dir
    if not here.is_dir():
        return _result("mount-list", False, f"{here} is not a directory on the mount")
    for part in probe.split("/"):
        try:
            names = sorted(os.listdir(here))
        except OSError as e:
            return _result("mount-list", False, f"listing {here} failed: {e.strerror or e}")
        if part not in names:
            shown = ", ".join(names[:10]) or "nothing"
            return _result("mount-list", False, f"{here} lists {shown}, not {part}")
        here = here / part
    return _result("mount-list", True, f"{probe_dir} lists down to {probe}")


def check_read(probe_dir: Path, probe: str, expected: str) -> dict:
    path = probe_dir / probe
    try:
        body = path.read_bytes()
    except OSError as e:
        return _result("mount-read", False, f"reading {path} failed: {e.strerror or e}")
    got = hashlib.sha256(body).hexdigest()
    if got != expected:
        return _result("mount-read", False, f"{path}: {len(body)} bytes with sha256 {got[:12]}…, expected {expected[:12]}…")
    return _result("mount-read", True, f"{path}: {len(body)} bytes, sha256 matches")


def _version(module) -> str | None:
    return getattr(module, "__version__", None) or getattr(module, "VERSION", None)


def check_imports() -> tuple[dict, dict]:
    """Import what a training run imports; (result, versions of the libraries)."""
    import importlib

    started = time.monotonic()
    try:
        for name in TRAINER_MODULES:
            importlib.import_module(f"{__package__}.{name}")
        for module_name, names in LIBRARY_NAMES.items():
            module = importlib.import_module(module_name)
            missing = [n for n in names if not hasattr(module, n)]
            if missing:
                raise ImportError(f"{module_name} has no {', '.join(missing)}")
    except Exception as e:  # any failure to import is the finding, reported in one line
        return _result("trainer-import", False, f"{type(e).__name__}: {e}".splitlines()[0]), {}
    versions = {}
    for name in VERSIONED:
        module = sys.modules.get(name)
        if module is None:
            try:
                module = importlib.import_module(name)
            except ImportError:
                continue
        if _version(module):
            versions[name] = str(_version(module))
    took = time.monotonic() - started
    summary = " ".join(f"{k}={v}" for k, v in versions.items())
    return _result("trainer-import", True, f"avatar_trainer {__version__} and its libraries import in {took:.1f} s: {summary}"), versions


def check_cuda() -> dict:
    """CUDA on the smoke machine is information, not a requirement: the smoke job has no GPU."""
    try:
        import torch

        available = bool(torch.cuda.is_available())
    except Exception as e:
        return _result("cuda", False, f"torch.cuda failed: {type(e).__name__}: {e}".splitlines()[0])
    detail = "CUDA visible" if available else "no CUDA device (expected: the smoke job runs on a CPU machine)"
    return _result("cuda", True, detail, available=available)


def write_marker(path: Path, marker: dict) -> None:
    """Temporary name, then rename: the bucket never holds half a marker (the checkpoints' way)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    tmp.write_text(json.dumps(marker, indent=2) + "\n", encoding="utf-8")
    os.replace(tmp, path)


def main(args: argparse.Namespace) -> int:
    try:
        probe_dir = resolve_location(args.probe_dir, "--probe-dir")
        marker_path = resolve_location(args.marker, "--marker")
    except TrainerError as e:  # a gs:// location without a mount: nothing to check, nowhere to write
        sys.stderr.write(f"error: {e}\n")
        return 1
    checks = [check_listing(probe_dir, args.probe), check_read(probe_dir, args.probe, args.probe_sha256)]
    imported, versions = check_imports()
    checks += [imported, check_cuda()]
    ok = all(c["status"] == "ok" for c in checks)
    marker = {
        "schema": SCHEMA,
        "stamp": args.stamp,
        "trainer_version": __version__,
        "python": platform.python_version(),
        "machine": platform.machine(),
        "versions": versions,
        "checks": checks,
        "ok": ok,
    }
    try:
        write_marker(marker_path, marker)
    except OSError as e:
        emit(check="mount-write", status="fail", detail=f"writing {marker_path} failed: {e.strerror or e}")
        return 1
    emit(check="mount-write", status="ok", detail=f"wrote {marker_path}")
    emit("done", ok=ok)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main(parse_args()))
