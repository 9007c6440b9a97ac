"""Parseable log lines: one `key=value …` record per line on stdout, flushed.

The CLI (and Vertex's log viewer) read these; there are no progress bars and no redraws.
Values containing whitespace, quotes or '=' are JSON-quoted so a line always splits cleanly.
"""

from __future__ import annotations

import sys


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
    sys.stdout.write(line(head, **fields) + "\n")
    sys.stdout.flush()


def phase(name: str, **fields) -> None:
    emit(phase=name, **fields)
