"""`python -m avatar_trainer …` (see cli.py)."""

import sys

from .cli import run

if __name__ == "__main__":
    sys.exit(run())
