"""Latency of one image through handlers/local_server.py vs a direct EndpointHandler call.

Builds a tiny model directory (tiny random base pipeline + random LoRA + avatar.json + handler
files, all offline), then alternates direct calls and HTTP requests to a local server on
127.0.0.1 (port 0) with the same body, and prints p50 of each and their ratio (target ≤ 1.10×).

    python test/bench/serve_latency.py [--kind sd15|sdxl] [--runs 21] [--steps 1] [--strict]

Run with the project venv's python (npm run bench does). Loopback only; bounded loops.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "test" / "python" / "serving"))

from serving_support import LocalServer, build_tiny_model_dir  # noqa: E402

TARGET_RATIO = 1.10


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--kind", choices=("sd15", "sdxl"), default="sd15")
    parser.add_argument("--runs", type=int, default=21, help="timed requests per path (1-50, default 21)")
    parser.add_argument("--steps", type=int, default=1, help="inference steps per image (default 1)")
    parser.add_argument("--strict", action="store_true", help="exit 1 when the ratio misses the target")
    args = parser.parse_args(argv)
    if not 1 <= args.runs <= 50:
        parser.error("--runs must be between 1 and 50")
    return args


def load_handler(model_dir: Path):
    spec = importlib.util.spec_from_file_location("bench_handler", model_dir / "handler.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    started = time.perf_counter()
    handler = module.EndpointHandler(str(model_dir))
    return handler, time.perf_counter() - started


def main(argv=None) -> int:
    args = parse_args(argv)
    body = {
        "instances": [{"prompt": "a photo of {avatar}"}],
        "parameters": {"steps": args.steps, "guidance": 0, "seed": 42, "width": 256, "height": 256},
    }
    with tempfile.TemporaryDirectory(prefix="avatar-bench-serve-") as work:
        started = time.perf_counter()
        model_dir = build_tiny_model_dir(args.kind, Path(work))
        print(f"model dir built in {time.perf_counter() - started:.1f}s: {model_dir}", flush=True)

        handler, construct_s = load_handler(model_dir)
        print(f"direct: EndpointHandler constructed in {construct_s:.2f}s", flush=True)
        started = time.perf_counter()
        server = LocalServer(model_dir).start().wait_ready(timeout=300)
        print(f"server: ready in {time.perf_counter() - started:.2f}s at {server.url}", flush=True)
        try:
            def direct():
                return handler(json.loads(json.dumps(body)))

            def via_server():
                status, result = server.predict_json(body)
                if status != 200:
                    raise RuntimeError(f"server answered {status}: {result}")
                return result

            # warm-up, and a sanity check that both paths produce the same image
            a, b = direct(), via_server()
            if a["predictions"][0]["image_b64"] != b["predictions"][0]["image_b64"]:
                print("warning: direct and server images differ", flush=True)

            times = {"direct": [], "server": []}
            for i in range(args.runs):  # alternate, so background load hits both paths alike
                for name, fn in (("direct", direct), ("server", via_server)) if i % 2 == 0 else (
                    ("server", via_server), ("direct", direct)):
                    t0 = time.perf_counter()
                    fn()
                    times[name].append(time.perf_counter() - t0)
        finally:
            server.stop()

    p50_direct = statistics.median(times["direct"])
    p50_server = statistics.median(times["server"])
    ratio = p50_server / p50_direct
    met = ratio <= TARGET_RATIO
    print(f"{args.kind}, 256 px, {args.steps} step(s), guidance 0, {args.runs} runs each:")
    print(f"  direct handler call  p50 {p50_direct * 1000:8.1f} ms  (min {min(times['direct']) * 1000:.1f})")
    print(f"  via local_server     p50 {p50_server * 1000:8.1f} ms  (min {min(times['server']) * 1000:.1f})")
    print(f"  ratio {ratio:.3f}x (target <= {TARGET_RATIO:.2f}x: {'met' if met else 'NOT met'}); "
          f"ratio of minimums {min(times['server']) / min(times['direct']):.3f}x (less sensitive to background load)")
    print(f"serve_latency kind={args.kind} p50_direct_ms={p50_direct * 1000:.1f} "
          f"p50_server_ms={p50_server * 1000:.1f} ratio={ratio:.3f} construct_s={construct_s:.2f}", flush=True)
    return 1 if args.strict and not met else 0


if __name__ == "__main__":
    sys.exit(main())
