"""Where things live: local paths, Cloud Storage FUSE paths and gs:// URIs.

On Vertex, buckets are mounted read/write under /gcs/<bucket>/… and AIP_MODEL_DIR /
AIP_CHECKPOINT_DIR arrive as gs:// URIs, so every gs:// location is used through that mount
(no GCS client needed in the job). The mount root can be overridden with AVATAR_GCS_FUSE_ROOT
(tests point it at a temp dir).
"""

from __future__ import annotations

import os
from pathlib import Path

from .errors import TrainerError


def fuse_root() -> Path:
    return Path(os.environ.get("AVATAR_GCS_FUSE_ROOT", "/gcs"))


def gs_to_fuse(uri: str) -> Path:
    """gs://bucket/a/b → /gcs/bucket/a/b (without checking the mount)."""
    rest = uri[len("gs://"):].strip("/")
    if not rest or rest.split("/")[0] == "":
        raise TrainerError(f"invalid Cloud Storage URI {uri!r} (expected gs://bucket/path)")
    return fuse_root().joinpath(*rest.split("/"))


def resolve_location(value: str, what: str, must_exist: bool = False) -> Path:
    """Turn a local path, /gcs/… path or gs:// URI into a local filesystem path."""
    if value.startswith("gs://"):
        path = gs_to_fuse(value)
        bucket_dir = fuse_root() / path.relative_to(fuse_root()).parts[0]
        if not fuse_root().is_dir():
            raise TrainerError(
                f"{what} {value} is a gs:// URI but Cloud Storage FUSE is not mounted at {fuse_root()}; "
                "run on Vertex AI or pass a local path"
            )
        if not bucket_dir.is_dir():
            raise TrainerError(f"{what} {value}: bucket not found under the FUSE mount ({bucket_dir})")
    else:
        path = Path(value).expanduser()
    path = path.absolute()
    if must_exist and not path.exists():
        raise TrainerError(f"{what} not found: {value}")
    return path
