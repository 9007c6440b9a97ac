"""avatar_trainer: DreamBooth-style LoRA trainer for SD 1.x / SDXL, shipped to the Vertex job.

Runs without being installed (`PYTHONPATH=templates/trainer python -m avatar_trainer …`, or from
a Cloud Storage FUSE directory on Vertex). Kept import-light on purpose: `--help` and argument
errors must not pay for importing torch.
"""

import sys as _sys

__version__ = "0.1.0"

# Run from /gcs/…, Python would write __pycache__ objects into the bucket; don't.
if __file__.startswith("/gcs/"):
    _sys.dont_write_bytecode = True

from .cli import main, parse_args  # noqa: E402  (cheap: argparse only)

__all__ = ["__version__", "main", "parse_args"]
