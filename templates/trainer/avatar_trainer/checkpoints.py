"""Resumable training state: LoRA weights + optimizer + step + RNG, every N steps.

Spot VMs get preempted and Vertex restarts the job with the same arguments; the trainer then
continues from the newest *complete* checkpoint. A checkpoint directory counts as complete only
when its marker file exists, and the marker is written last, so a checkpoint cut short by a
preemption is simply ignored. Each file is written under a temporary name and renamed (works on
local disks and, object by object, on Cloud Storage FUSE, where directory renames are not atomic).

Layout of a complete checkpoint (the CLI's checkpoint picker reads the first two for every step):
  pytorch_lora_weights.safetensors  the LoRA at that step, in the final model's format (registrable)
  samples/sample-0..3.png + samples/samples.json   when samples were rendered at that step
  lora.safetensors optimizer.pt rng.pt   resume state (peft names, optimizer moments, RNG)
  state.json                        step, fingerprint of the options, trainer version
  COMPLETE                          written last
Pruning (`keep`) deletes only the resume state of older checkpoints: their weights and samples
stay for the whole run, and the newest `keep` checkpoints can still be resumed from.
"""

from __future__ import annotations

import json
import os
import re
import shutil
from pathlib import Path

from .errors import TrainerError
from .samples import MANIFEST as SAMPLES_MANIFEST, SAMPLES_DIR

MARKER = "COMPLETE"
WEIGHTS_NAME = "pytorch_lora_weights.safetensors"
RESUME_FILES = ("lora.safetensors", "optimizer.pt", "rng.pt")
_NAME = re.compile(r"^checkpoint-(\d{6,})$")


def _atomic_write(path: Path, write) -> None:
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    write(tmp)
    os.replace(tmp, path)


def checkpoint_path(root: Path, step: int) -> Path:
    return root / f"checkpoint-{step:06d}"


def list_complete(root: Path) -> list[tuple[int, Path]]:
    """Complete checkpoints under `root`, oldest first."""
    if not root.is_dir():
        return []
    found = []
    for entry in root.iterdir():
        m = _NAME.match(entry.name)
        if m and entry.is_dir() and (entry / MARKER).is_file():
            found.append((int(m.group(1)), entry))
    return sorted(found)


def has_resume_state(path: Path) -> bool:
    return all((path / name).is_file() for name in (*RESUME_FILES, "state.json"))


def latest(root: Path) -> tuple[int, Path] | None:
    """The newest complete checkpoint that can be resumed from (pruned ones keep only weights/samples)."""
    done = [c for c in list_complete(root) if has_resume_state(c[1])]
    return done[-1] if done else None


def save(root: Path, step: int, lora_state: dict, optimizer_state: dict, rng_state: dict,
         meta: dict, keep: int = 2, write_weights=None, samples: tuple[list[dict], list] | None = None) -> Path:
    """Write checkpoint `step`, then prune the resume state of older complete ones down to `keep`.

    `write_weights(dir)` writes pytorch_lora_weights.safetensors into the checkpoint (atomically);
    `samples` = (entries as in samples.json, PIL images) renders them into samples/.
    """
    import torch
    from safetensors.torch import save_file

    path = checkpoint_path(root, step)
    if path.exists():  # a leftover from an interrupted attempt at this same step
        shutil.rmtree(path)
    path.mkdir(parents=True)
    if write_weights is not None:
        write_weights(path)
    if samples is not None:
        write_samples(path / SAMPLES_DIR, step, *samples)
    tensors = {k: v.detach().to("cpu").contiguous() for k, v in lora_state.items()}
    _atomic_write(path / "lora.safetensors", lambda p: save_file(tensors, str(p)))
    _atomic_write(path / "optimizer.pt", lambda p: torch.save(optimizer_state, p))
    _atomic_write(path / "rng.pt", lambda p: torch.save(rng_state, p))
    state = {"step": step, **meta}
    _atomic_write(path / "state.json", lambda p: p.write_text(json.dumps(state, indent=2, sort_keys=True)))
    _atomic_write(path / MARKER, lambda p: p.write_text(f"{step}\n"))

    for _, old in list_complete(root)[:-keep]:
        prune(old)
    # Leftovers of attempts cut short before this step can never become complete: drop them.
    for entry in root.iterdir():
        m = _NAME.match(entry.name)
        if m and int(m.group(1)) < step and entry.is_dir() and not (entry / MARKER).exists():
            shutil.rmtree(entry, ignore_errors=True)
    return path


def prune(path: Path) -> None:
    """Drop a checkpoint's resume state; keep its weights, samples, state.json and marker.

    A checkpoint of an older trainer (no weights file) has nothing worth keeping: removed whole.
    """
    if not (path / WEIGHTS_NAME).is_file():
        shutil.rmtree(path, ignore_errors=True)
        return
    for name in RESUME_FILES:
        try:
            (path / name).unlink()
        except FileNotFoundError:
            pass


def write_samples(folder: Path, step: int, entries: list[dict], images: list) -> None:
    """samples/: the PNGs, then samples.json last (a reader that finds it finds every image)."""
    import io

    folder.mkdir(parents=True, exist_ok=True)
    for entry, image in zip(entries, images, strict=True):
        buf = io.BytesIO()
        image.save(buf, format="PNG")
        _atomic_write(folder / entry["file"], lambda p, b=buf.getvalue(): p.write_bytes(b))
    doc = {"step": step, "samples": entries}
    _atomic_write(folder / SAMPLES_MANIFEST, lambda p: p.write_text(json.dumps(doc, indent=2) + "\n"))


def load(path: Path) -> dict:
    """Read a complete checkpoint: {"step", "meta", "lora", "optimizer", "rng"}."""
    import torch
    from safetensors.torch import load_file

    try:
        state = json.loads((path / "state.json").read_text())
        return {
            "step": int(state["step"]),
            "meta": state,
            "lora": load_file(str(path / "lora.safetensors")),
            # Our own files only (optimizer tensors, RNG byte tensors): full unpickling is needed
            # for numpy/python RNG tuples.
            "optimizer": torch.load(path / "optimizer.pt", map_location="cpu", weights_only=False),
            "rng": torch.load(path / "rng.pt", map_location="cpu", weights_only=False),
        }
    except Exception as e:
        raise TrainerError(f"checkpoint {path} is unreadable: {e}") from None
