"""Studio mode: the first image of an avatar, by how much work its handler must do first.

On the tiny SD 1.x model, CPU, 256 px, 1 step (so the numbers are dominated by what differs):

- switch: a studio where the avatar's LoRA is already loaded, right after another avatar's request
  (set_adapters only);
- load:   a warm studio (base loaded) asked for an avatar it has not loaded yet (its avatar.json and
  LoRA read from its model directory in the store, load_lora_weights, then the image);
- fresh:  what serving the avatar without a studio costs: a new handler for it. Measured twice:
  in-process construction (imports already paid) and a fresh server process
  (local_server.py: python start, torch/diffusers imports, construction, first request) — what a
  new deployment does before it answers, on top of the minutes Vertex takes to start a VM.

Goals (issue #14): switch >= 10x faster than fresh, load >= 5x faster than fresh.

    python test/bench/studio_swap.py [--avatars 6] [--repeats 3] [--strict]
"""

from __future__ import annotations

import argparse
import importlib.util
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
sys.path.insert(0, str(ROOT / "templates" / "trainer"))

from serving_support import HANDLER_PY, LocalServer, build_avatar_dir, build_studio_dir, write_studio_manifest  # noqa: E402

SWITCH_GOAL, LOAD_GOAL = 10.0, 5.0
BODY = {"instances": [{"prompt": "a photo of {avatar}"}], "parameters": {"steps": 1, "guidance": 0, "seed": 42, "width": 256, "height": 256}}


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--avatars", type=int, default=6, help="avatars in the studio (2-16, default 6)")
    parser.add_argument("--repeats", type=int, default=3, help="fresh handlers/processes measured (1-10, default 3)")
    parser.add_argument("--strict", action="store_true", help="exit 1 when a goal is missed")
    args = parser.parse_args(argv)
    if not 2 <= args.avatars <= 16 or not 1 <= args.repeats <= 10:
        parser.error("--avatars must be 2-16 and --repeats 1-10")
    return args


def load_module():
    spec = importlib.util.spec_from_file_location("bench_studio_handler", HANDLER_PY)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def request(avatar: str) -> dict:
    return {"instances": BODY["instances"], "parameters": dict(BODY["parameters"], avatar=avatar)}


def timed(fn) -> float:
    started = time.perf_counter()
    fn()
    return time.perf_counter() - started


def main(argv=None) -> int:
    args = parse_args(argv)
    from avatar_trainer.tiny import build_tiny_pipeline

    with tempfile.TemporaryDirectory(prefix="avatar-bench-studio-") as work:
        work = Path(work)
        base = build_tiny_pipeline("sd15", work / "base", seed=0)
        names = [f"avatar{i}" for i in range(args.avatars)]
        dirs = {n: build_avatar_dir("sd15", base, work / n, n, seed=i + 1) for i, n in enumerate(names)}
        for d in dirs.values():
            (d / "handler.py").write_bytes(HANDLER_PY.read_bytes())
        manifest = write_studio_manifest(work / "manifest.json", "sd15", base, dirs)
        studio_dir = build_studio_dir("sd15", base, work / "studio", manifest)
        module = load_module()
        os.environ["AVATAR_STUDIO_MAX_ADAPTERS"] = str(args.avatars)

        studio = module.EndpointHandler(str(studio_dir))
        studio({"instances": BODY["instances"], "parameters": dict(BODY["parameters"], avatar=names[0])})  # warm-up
        load = [timed(lambda n=n: studio(request(n))) for n in names[1:]]
        switch = []
        for _ in range(3):
            for n in names:
                switch.append(timed(lambda n=n: studio(request(n))))

        in_process = []
        for _ in range(args.repeats):
            def fresh():
                handler = module.EndpointHandler(str(dirs[names[0]]))
                handler(BODY)
            in_process.append(timed(fresh))

        processes = []
        for _ in range(args.repeats):
            started = time.perf_counter()
            server = LocalServer(dirs[names[0]]).start().wait_ready(timeout=300)
            try:
                status, result = server.predict_json(BODY)
                if status != 200:
                    raise RuntimeError(f"fresh server answered {status}: {result}")
                processes.append(time.perf_counter() - started)
            finally:
                server.stop()

    p50 = {k: statistics.median(v) for k, v in (("switch", switch), ("load", load), ("in_process", in_process), ("process", processes))}
    switch_ratio, load_ratio = p50["process"] / p50["switch"], p50["process"] / p50["load"]
    print(f"sd15 tiny, CPU, 256 px, 1 step; {args.avatars} avatars, {len(switch)} switches, {len(load)} loads, {args.repeats} fresh handlers:")
    print(f"  switch (LoRA loaded)          p50 {p50['switch'] * 1000:8.1f} ms")
    print(f"  load from the store           p50 {p50['load'] * 1000:8.1f} ms")
    print(f"  fresh handler, in-process     p50 {p50['in_process'] * 1000:8.1f} ms")
    print(f"  fresh server process          p50 {p50['process'] * 1000:8.1f} ms")
    print(f"  fresh/switch {switch_ratio:.1f}x (goal >= {SWITCH_GOAL:g}x: {'met' if switch_ratio >= SWITCH_GOAL else 'NOT met'}); "
          f"fresh/load {load_ratio:.1f}x (goal >= {LOAD_GOAL:g}x: {'met' if load_ratio >= LOAD_GOAL else 'NOT met'}); "
          f"in-process construction/switch {p50['in_process'] / p50['switch']:.1f}x, /load {p50['in_process'] / p50['load']:.1f}x")
    print(f"studio_swap switch_ms={p50['switch'] * 1000:.1f} load_ms={p50['load'] * 1000:.1f} "
          f"fresh_in_process_ms={p50['in_process'] * 1000:.1f} fresh_process_ms={p50['process'] * 1000:.1f} "
          f"switch_ratio={switch_ratio:.1f} load_ratio={load_ratio:.1f}", flush=True)
    met = switch_ratio >= SWITCH_GOAL and load_ratio >= LOAD_GOAL
    return 1 if args.strict and not met else 0


if __name__ == "__main__":
    sys.exit(main())
