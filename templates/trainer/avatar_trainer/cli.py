"""Command line: `python -m avatar_trainer …` → parse_args(argv) → main(args).

Every input is a flag. Argument errors exit 2 (argparse); failures print one line
`error: <message>` on stderr and exit 1 (traceback only with --verbose or AVATAR_DEBUG=1);
a SIGTERM (Spot preemption) finishes the step, checkpoints, and `run` returns 143 (Ctrl-C: 130);
`python -m avatar_trainer` then re-raises the signal so the process dies by it.
Nothing heavy is imported here, so --help and argument errors return instantly.
"""

from __future__ import annotations

import argparse
import os
import re
import sys

from . import log
from .errors import Interrupted, TrainerError
from .paths import resolve_location

PIPELINE_CHOICES = ("sd15", "sdxl")
DEFAULT_RESOLUTION = {"sd15": 512, "sdxl": 1024}


def _int_at_least(minimum: int, rule: str):
    """An argparse type: a whole number of at least `minimum` (`rule` words the bound in errors)."""

    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}") from None
        if value < minimum:
            raise argparse.ArgumentTypeError(f"{rule}, got {value}")
        return value

    return parse


_positive_int = _int_at_least(1, "must be at least 1")
_non_negative_int = _int_at_least(0, "must be 0 or more")


def _positive_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
    if not value > 0 or value != value or value == float("inf"):
        raise argparse.ArgumentTypeError(f"must be a positive number, got {text}")
    return value


def _unit_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
    if not 0.0 <= value <= 1.0:
        raise argparse.ArgumentTypeError(f"must be between 0 and 1, got {text}")
    return value


def _resolution(text: str) -> int:
    value = _positive_int(text)
    if value % 8 or not 64 <= value <= 2048:
        raise argparse.ArgumentTypeError(f"must be a multiple of 8 between 64 and 2048, got {value}")
    return value


def _word(text: str) -> str:
    if not re.fullmatch(r"[^\s]{1,64}", text):
        raise argparse.ArgumentTypeError(f"must be one word without spaces, got {text!r}")
    return text


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m avatar_trainer",
        description="Train a DreamBooth-style LoRA for SD 1.x / SDXL from a zip of selfies.",
    )
    io = p.add_argument_group("data and locations")
    io.add_argument("--dataset", required=True,
                    help="dataset zip: local path, /gcs/<bucket>/… or gs://<bucket>/… (via Cloud Storage FUSE)")
    io.add_argument("--output-dir", default=None,
                    help="where pytorch_lora_weights.safetensors + avatar.json go (default: $AIP_MODEL_DIR)")
    io.add_argument("--checkpoint-dir", default=None,
                    help="resumable training state (default: $AIP_CHECKPOINT_DIR)")
    io.add_argument("--flip", action="store_true",
                    help="horizontal-flip augmentation (off by default: a mirrored face averages away its asymmetries)")
    io.add_argument("--mask-weight", type=_unit_float, default=0.4,
                    help="loss weight outside the face (from the dataset's faces.json) relative to 1.0 on it; "
                         "1.0 = no face weighting (default: 0.4)")

    m = p.add_argument_group("model")
    m.add_argument("--base", required=True, help="base model: Hugging Face Hub id or local diffusers directory")
    m.add_argument("--base-revision", default=None,
                   help="Hub branch, tag or commit of --base (default: main); the commit used is recorded "
                        "in avatar.json as base_revision")
    m.add_argument("--pipeline", choices=PIPELINE_CHOICES, default=None,
                   help="pipeline family (default: detected from model_index.json)")
    m.add_argument("--vae", default=None, help="VAE override, e.g. an fp16-safe SDXL VAE (hub id or directory)")
    m.add_argument("--token", type=_word, default="sks", help="rare trigger token (default: sks)")
    m.add_argument("--class-word", type=_word, default="person", help="subject class (default: person)")
    m.add_argument("--rank", type=_positive_int, default=16, help="LoRA rank (default: 16)")
    m.add_argument("--resolution", type=_resolution, default=None,
                   help="training resolution (default: 512 for sd15, 1024 for sdxl)")

    c = p.add_argument_group("captions")
    c.add_argument("--caption", choices=("none", "blip"), default="none",
                   help="none: one instance prompt for all images; blip: per-image BLIP captions + trigger")
    c.add_argument("--caption-model", default="Salesforce/blip-image-captioning-large",
                   help="BLIP model (hub id or directory) for --caption blip")

    t = p.add_argument_group("training")
    t.add_argument("--steps", type=_positive_int, default=1000, help="optimizer steps (default: 1000)")
    t.add_argument("--lr", type=_positive_float, default=1e-4, help="learning rate (default: 1e-4)")
    t.add_argument("--lr-warmup-steps", type=_non_negative_int, default=None,
                   help="linear warmup steps of the constant schedule (default: min(100, steps/10))")
    t.add_argument("--seed", type=int, default=42, help="seed for init, noise, timesteps and data order")
    t.add_argument("--mixed-precision", choices=("auto", "no", "fp16", "bf16"), default="auto",
                   help="auto: bf16 on Ampere+ GPUs, fp16 on older (T4), fp32 on CPU")
    t.add_argument("--gradient-checkpointing", action="store_true", help="trade compute for UNet memory")
    t.add_argument("--cache-latents", choices=("auto", "yes", "no"), default="auto",
                   help="encode images once with the VAE and free it (auto: when they fit)")
    t.add_argument("--max-grad-norm", type=_positive_float, default=1.0, help="gradient clipping (default: 1.0)")
    t.add_argument("--prior-preservation", action="store_true",
                   help="add a class-prior loss on images of the class generated by the base model")
    t.add_argument("--num-class-images", type=_positive_int, default=50, help="class images (default: 50)")
    t.add_argument("--prior-loss-weight", type=_positive_float, default=1.0, help="class loss weight (default: 1.0)")
    t.add_argument("--class-inference-steps", type=_positive_int, default=25,
                   help="sampling steps per generated class image (default: 25)")

    k = p.add_argument_group("checkpoints and logs")
    k.add_argument("--checkpoint-every", type=_positive_int, default=100, help="checkpoint interval in steps")
    k.add_argument("--keep-checkpoints", type=_positive_int, default=2,
                   help="newest checkpoints that keep their resume state (older ones keep weights and samples)")
    k.add_argument("--samples-every", type=_non_negative_int, default=None,
                   help="render the sample prompts into the checkpoint every N steps and at the last step; "
                        "0 = never (default: about 5 sampled checkpoints per run)")
    k.add_argument("--sample-steps", type=_positive_int, default=None,
                   help="sampler steps per sample image (default: 25; 2 on the tiny test models)")
    k.add_argument("--log-every", type=_positive_int, default=10, help="one step=… log line every N steps")
    k.add_argument("--log-file", default=None,
                   help="also append every log line and the final error to this file (path, /gcs/… or gs://…)")
    k.add_argument("--verbose", action="store_true", help="library logs and tracebacks on errors")

    r = p.add_argument_group("metadata (recorded in avatar.json)")
    r.add_argument("--name", default=None, help="avatar name")
    r.add_argument("--run-id", default=None, help="run id")
    r.add_argument("--dataset-sha256", default=None,
                   help="sha256 of the normalised dataset (default: the zip's 64-hex file name, else its hash)")
    return p


def parse_args(argv=None) -> argparse.Namespace:
    parser = build_parser()
    args = parser.parse_args(argv)
    # Vertex passes the run's locations in the environment (gs:// URIs, used through /gcs).
    if args.output_dir is None:
        args.output_dir = os.environ.get("AIP_MODEL_DIR") or None
    if args.checkpoint_dir is None:
        args.checkpoint_dir = os.environ.get("AIP_CHECKPOINT_DIR") or None
    if not args.output_dir:
        parser.error("--output-dir is required (or set AIP_MODEL_DIR)")
    if not args.checkpoint_dir:
        parser.error("--checkpoint-dir is required (or set AIP_CHECKPOINT_DIR)")
    if args.dataset_sha256 is not None and not re.fullmatch(r"[0-9a-f]{64}", args.dataset_sha256):
        parser.error("--dataset-sha256 must be 64 lowercase hex characters")
    if not args.base.strip():
        parser.error("--base must not be empty")
    if args.base_revision is not None and not re.fullmatch(r"[\w./-]{1,128}", args.base_revision):
        parser.error("--base-revision must be a branch, tag or commit hash")
    return args


def main(args: argparse.Namespace) -> dict:
    """Train with parsed args; raises TrainerError on failure. Returns a small summary."""
    from .train import train

    return train(args)


def _debug(args) -> bool:
    return bool(getattr(args, "verbose", False)) or os.environ.get("AVATAR_DEBUG") == "1"


def run(argv=None) -> int:
    """parse_args + main with the exit-code contract. Used by `python -m avatar_trainer`."""
    args = parse_args(argv)  # SystemExit(2) on bad arguments
    try:
        return _run(args)
    finally:
        log.close_mirror()  # cli.run may be called again in the same process (tests)


def _run(args: argparse.Namespace) -> int:
    try:
        if args.log_file:
            path = resolve_location(args.log_file, "--log-file")
            try:
                log.mirror_to(path)
            except OSError as e:
                raise TrainerError(f"--log-file {args.log_file}: cannot write it ({e.strerror or e})") from e
        main(args)
        return 0
    except TrainerError as e:
        if _debug(args):
            import traceback

            traceback.print_exc()
        _error(str(e))
        return 1
    except Interrupted as e:
        _error(str(e))
        return e.exit_code
    except KeyboardInterrupt:
        _error("interrupted")
        return 130
    except Exception as e:  # a bug or an unexpected library failure: still one clean line
        if _debug(args):
            import traceback

            traceback.print_exc()
        _error(f"{type(e).__name__}: {e}".splitlines()[0])
        return 1


def _error(message: str) -> None:
    text = "error: " + " ".join(message.split())
    sys.stdout.flush()
    sys.stderr.write(text + "\n")
    sys.stderr.flush()
    log.mirror_line(text)
