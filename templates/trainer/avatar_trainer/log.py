"""Parseable log lines: one `key=value …` record per line on stdout, flushed.

The CLI (and Vertex's log viewer) read these; there are no progress bars and no redraws.
Values containing whitespace, quotes or '=' are JSON-quoted so a line always splits cleanly.
With --log-file every line is also appended to a file: on Vertex that file sits in the bucket
(through the Cloud Storage FUSE mount), where `avatar logs` and the CLI's progress read it.
"""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path

_mirror = None  # the --log-file, open for appending
_synced_at = 0.0
# Cloud Storage FUSE uploads the whole object on every fsync: step lines are synced at most this
# often (the CLI polls every 15 s); phase, checkpoint, done and error lines at once.
SYNC_EVERY_S = 5.0


def mirror_to(path: Path) -> None:
    """Also append every line to `path` (created with its folders; a resumed run appends)."""
    global _mirror
    path.parent.mkdir(parents=True, exist_ok=True)
    _mirror = open(path, "a", encoding="utf-8")


def close_mirror() -> None:
    global _mirror
    if _mirror is not None:
        try:
            _mirror.close()  # on FUSE, closing uploads what is still unsynced
        except OSError:
            pass
        _mirror = None


def mirror_line(text: str) -> None:
    """Append one line to the mirror; written at once, synced (uploaded, on FUSE) at once unless it
    is a step line and the last sync was under SYNC_EVERY_S ago. A mirror that stops working is
    dropped with one warning: it must never stop the training."""
    global _mirror, _synced_at
    if _mirror is None:
        return
    try:
        _mirror.write(text + "\n")
        _mirror.flush()
        now = time.monotonic()
        if not text.startswith("step=") or now - _synced_at >= SYNC_EVERY_S:
            os.fsync(_mirror.fileno())
            _synced_at = now
    except OSError as e:
        _mirror = None
        sys.stderr.write(f"warning: --log-file stopped working ({e}); logging to stdout only\n")


def _fmt(value) -> str:
    if isinstance(value, float):
        text = f"{value:.4f}" if abs(value) < 1e4 else f"{value:.0f}"
    else:
        text = str(value)
    if text == "" or any(c.isspace() or c in "\"'=" for c in text):
        import json

        return json.dumps(text)
    return text


def line(head: str | None = None, **fields) -> str:
    parts = [head] if head else []
    parts += [f"{k}={_fmt(v)}" for k, v in fields.items() if v is not None]
    return " ".join(parts)


def emit(head: str | None = None, **fields) -> None:
    """Print one record, e.g. emit(phase="data", images=12) or emit("checkpoint", step=2, path=p)."""
    text = line(head, **fields)
    sys.stdout.write(text + "\n")
    sys.stdout.flush()
    mirror_line(text)


def phase(name: str, **fields) -> None:
    emit(phase=name, **fields)
