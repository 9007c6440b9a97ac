"""`python -m avatar_trainer …` (see cli.py)."""

import os
import signal
import sys

from .cli import run

if __name__ == "__main__":
    code = run()
    # Stopped by a signal (after checkpointing): die by that same signal, so a supervisor
    # (Vertex, the local backend) sees "interrupted" rather than an ordinary failure.
    for sig, sig_code in ((signal.SIGTERM, 143), (signal.SIGINT, 130)):
        if code == sig_code:
            sys.stdout.flush()
            sys.stderr.flush()
            signal.signal(sig, signal.SIG_DFL)
            os.kill(os.getpid(), sig)
    sys.exit(code)
