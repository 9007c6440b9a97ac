"""Helpers shared by the serving tests and the latency benchmark (stdlib HTTP only).

- Model directories: build_tiny_model_dir / build_model_dir.
- LocalServer: runs handlers/local_server.py in a subprocess, waits for its ready line, stops it.
- http_request: one request on a fresh loopback connection.


A model directory is what `avatar register` uploads and the serving container copies to
/opt/huggingface/model: `pytorch_lora_weights.safetensors`, `avatar.json`, `handler.py`,
`requirements.txt`. Here the LoRA is made directly with peft on a tiny random pipeline (built
offline by `avatar_trainer.tiny`), with random (non-zero) LoRA B matrices so that the LoRA
visibly changes the output.
"""

from __future__ import annotations

import http.client
import importlib.util
import json
import os
import queue
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import textwrap
import threading
import time
from pathlib import Path
from urllib.parse import urlsplit

REPO_ROOT = Path(__file__).resolve().parents[3]
HANDLERS_DIR = REPO_ROOT / "handlers"
HANDLER_PY = HANDLERS_DIR / "handler.py"
LOCAL_SERVER_PY = HANDLERS_DIR / "local_server.py"
TRAINER_DIR = REPO_ROOT / "templates" / "trainer"

# Measurements collected by the tests and printed in the pytest summary (conftest.py).
CONSTRUCTION_SECONDS: dict[str, float] = {}
IMAGE_SECONDS: list[tuple[str, float]] = []

UNET_TARGETS = ["to_q", "to_k", "to_v", "to_out.0"]
TEXT_TARGETS = ["q_proj", "k_proj", "v_proj", "out_proj"]


def avatar_json(kind: str, base_model: Path | str, *, resolution: int = 64, rank: int = 4) -> dict:
    return {
        "schema": 1,
        "name": "tiny",
        "run_id": "20260101-000000",
        "base_model": str(base_model),
        "pipeline": kind,
        "token": "sks",
        "class_word": "person",
        "instance_prompt": "a photo of sks person",
        "resolution": resolution,
        "rank": rank,
        "steps": 0,
        "dataset_sha256": "0" * 64,
        "trainer_version": "test",
        "captions": "none",
    }


def write_random_lora(kind: str, base_dir: Path, out_dir: Path, *, rank: int = 4, seed: int = 1) -> Path:
    """Save a random LoRA (UNet + text encoders) for the pipeline at `base_dir` into `out_dir`."""
    import torch
    from diffusers import StableDiffusionPipeline, StableDiffusionXLPipeline
    from diffusers.utils import convert_state_dict_to_diffusers
    from peft import LoraConfig
    from peft.utils import get_peft_model_state_dict

    pipeline_class = StableDiffusionXLPipeline if kind == "sdxl" else StableDiffusionPipeline
    pipe = pipeline_class.from_pretrained(str(base_dir))
    torch.manual_seed(seed)
    # init_lora_weights=False keeps the default (random, non-zero) init of both A and B.
    pipe.unet.add_adapter(LoraConfig(r=rank, lora_alpha=rank, init_lora_weights=False, target_modules=UNET_TARGETS))
    layers = {"unet_lora_layers": convert_state_dict_to_diffusers(get_peft_model_state_dict(pipe.unet))}
    encoders = [("text_encoder", "text_encoder_lora_layers")]
    if kind == "sdxl":
        encoders.append(("text_encoder_2", "text_encoder_2_lora_layers"))
    for attr, key in encoders:
        encoder = getattr(pipe, attr)
        encoder.add_adapter(LoraConfig(r=rank, lora_alpha=rank, init_lora_weights=False, target_modules=TEXT_TARGETS))
        layers[key] = convert_state_dict_to_diffusers(get_peft_model_state_dict(encoder))
    out_dir.mkdir(parents=True, exist_ok=True)
    pipeline_class.save_lora_weights(str(out_dir), **layers)
    return out_dir / "pytorch_lora_weights.safetensors"


def build_model_dir(kind: str, base_dir: Path, out_dir: Path, *, resolution: int = 64) -> Path:
    """A complete model directory: random LoRA + avatar.json + handler.py + requirements.txt."""
    out_dir = Path(out_dir)
    write_random_lora(kind, Path(base_dir), out_dir)
    (out_dir / "avatar.json").write_text(json.dumps(avatar_json(kind, base_dir, resolution=resolution), indent=2))
    shutil.copy2(HANDLER_PY, out_dir / "handler.py")
    shutil.copy2(HANDLERS_DIR / "requirements.txt", out_dir / "requirements.txt")
    return out_dir


def build_tiny_model_dir(kind: str, work_dir: Path) -> Path:
    """Tiny base pipeline (in `work_dir/base`) + model directory (`work_dir/model`)."""
    if str(TRAINER_DIR) not in sys.path:
        sys.path.insert(0, str(TRAINER_DIR))
    from avatar_trainer.tiny import build_tiny_pipeline

    base = build_tiny_pipeline(kind, Path(work_dir) / "base", seed=0)
    return build_model_dir(kind, base, Path(work_dir) / "model")


# ------------------------------------------------------------------------------------------
# the local server in a subprocess

# Vertex-style routes of the shared real-model server fixture (conftest.sd15_server).
SD15_HEALTH = "/v1/endpoints/42/deployedModels/7"
SD15_PREDICT = "/v1/endpoints/42/deployedModels/7:predict"

READY_RE = re.compile(r"^ready url=(?P<url>\S+) health=(?P<health>\S+) predict=(?P<predict>\S+)$")


class LocalServer:
    """`python handlers/local_server.py` in a subprocess (127.0.0.1, port 0 unless told)."""

    def __init__(self, model_dir, *, env=None, args=None, aip=None, python=sys.executable):
        self.model_dir = Path(model_dir)
        self.env = dict(os.environ)
        for key in ("AIP_MODE", "AIP_HTTP_PORT", "AIP_HEALTH_ROUTE", "AIP_PREDICT_ROUTE", "HF_MODEL_DIR"):
            self.env.pop(key, None)
        self.env["PYTHONUNBUFFERED"] = "1"
        if aip:
            self.env.update({"AIP_MODE": "PREDICTION", "AIP_HTTP_PORT": "0"})
            self.env.update(aip)
        self.env.update(env or {})
        if args is None:
            args = ["--model-dir", str(self.model_dir)] + ([] if aip else ["--port", "0"])
        self.argv = [python, str(LOCAL_SERVER_PY), *args]
        self.proc: subprocess.Popen | None = None
        self.lines: queue.Queue = queue.Queue()
        self.stdout_lines: list[str] = []
        self._stderr = tempfile.TemporaryFile(mode="w+b")
        self.url = self.health = self.predict = None
        self.host = None
        self.port = None

    def start(self) -> "LocalServer":
        self.proc = subprocess.Popen(
            self.argv, stdout=subprocess.PIPE, stderr=self._stderr, env=self.env, text=True, bufsize=1
        )
        threading.Thread(target=self._pump, daemon=True).start()
        return self

    def _pump(self) -> None:
        for line in self.proc.stdout:
            self.stdout_lines.append(line.rstrip("\n"))
            self.lines.put(line.rstrip("\n"))
        self.lines.put(None)

    def wait_ready(self, timeout: float = 120.0) -> "LocalServer":
        deadline = time.monotonic() + timeout
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise TimeoutError(f"no ready line within {timeout}s; stderr:\n{self.stderr()}")
            try:
                line = self.lines.get(timeout=remaining)
            except queue.Empty:
                continue
            if line is None:
                self.proc.wait(timeout=10)
                raise RuntimeError(f"server exited with {self.proc.returncode} before ready; stderr:\n{self.stderr()}")
            match = READY_RE.match(line)
            if match:
                self.url, self.health, self.predict = match["url"], match["health"], match["predict"]
                parts = urlsplit(self.url)
                self.host, self.port = parts.hostname, parts.port
                return self

    def stderr(self) -> str:
        self._stderr.flush()
        self._stderr.seek(0)
        return self._stderr.read().decode("utf-8", "replace")

    def wait_exit(self, timeout: float = 60.0) -> int:
        return self.proc.wait(timeout=timeout)

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 30.0) -> int:
        """Send `sig` and wait; returns the exit code (kills after `timeout`)."""
        if self.proc is None:
            return 0
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
            try:
                self.proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
                raise
        return self.proc.returncode

    def request(self, method: str, path: str, body=None, headers=None, timeout: float = 300.0):
        return http_request(self.host, self.port, method, path, body, headers, timeout)

    def predict_json(self, body, *, path=None, headers=None, timeout: float = 300.0):
        """POST a JSON body to the predict route; returns (status, parsed JSON or raw bytes)."""
        raw = body if isinstance(body, bytes) else json.dumps(body).encode()
        hdrs = {"Content-Type": "application/json"}
        hdrs.update(headers or {})
        status, _, data = self.request("POST", path or self.predict, raw, hdrs, timeout)
        try:
            return status, json.loads(data)
        except ValueError:
            return status, data

    def __enter__(self):
        return self.start().wait_ready()

    def __exit__(self, *exc):
        self.stop()


def http_request(host, port, method, path, body=None, headers=None, timeout: float = 300.0):
    """One request on a fresh connection: (status, headers dict (lower-case keys), body bytes)."""
    conn = http.client.HTTPConnection(host, port, timeout=timeout)
    try:
        conn.putrequest(method, path, skip_accept_encoding=True)
        headers = dict(headers or {})
        if body is not None:
            headers.setdefault("Content-Length", str(len(body)))
        for key, value in headers.items():
            conn.putheader(key, value)
        conn.endheaders(body)
        response = conn.getresponse()
        data = response.read()
        return response.status, {k.lower(): v for k, v in response.getheaders()}, data
    finally:
        conn.close()


def timed_health(server: LocalServer) -> tuple[float, int, bytes]:
    started = time.perf_counter()
    status, _, body = server.request("GET", server.health, timeout=10)
    return time.perf_counter() - started, status, body


# ------------------------------------------------------------------------------------------
# a fake handler.py for the server tests, and importing the real one

# A stand-in handler.py for testing the server's contract cheaply. Its behaviour is driven by the
# request's "parameters" (sleep / spin / raise / return) and by FAKE_INIT_* environment variables.
FAKE_HANDLER = textwrap.dedent(
    '''
    import os, sys, threading, time

    import fake_sibling  # importable only if the server put the model dir on sys.path

    _lock = threading.Lock()
    _state = {"calls": 0, "active": 0, "max_active": 0, "cancelled": []}


    class EndpointHandler:
        is_cancelled = None  # the optional hook the local server sets around each call

        def __init__(self, path):
            self.path = path
            self.path_type = type(path).__name__
            if os.environ.get("FAKE_INIT_SLEEP"):
                time.sleep(float(os.environ["FAKE_INIT_SLEEP"]))
            if os.environ.get("FAKE_INIT_FAIL"):
                raise RuntimeError(os.environ["FAKE_INIT_FAIL"])

        def __call__(self, data):
            with _lock:
                _state["calls"] += 1
                call = _state["calls"]
                _state["active"] += 1
                _state["max_active"] = max(_state["max_active"], _state["active"])
            started = time.time()
            try:
                params = data.get("parameters") or {}
                if "sleep" in params:
                    time.sleep(params["sleep"])
                for step in range(params.get("steps_of_50ms", 0)):  # a cancellable "pipeline"
                    time.sleep(0.05)
                    if self.is_cancelled and self.is_cancelled():
                        _state["cancelled"].append({"id": params.get("id"), "step": step + 1})
                        raise RuntimeError(f"cancelled after step {step + 1}")
                if "spin" in params:  # pure-Python busy loop: holds the GIL as much as it can
                    end = time.perf_counter() + params["spin"]
                    x = 0
                    while time.perf_counter() < end:
                        x += 1
                if "raise" in params:
                    kind = {"value": ValueError, "runtime": RuntimeError, "key": KeyError, "exit": SystemExit}[params.get("raise_type", "value")]
                    raise kind(params["raise"])
                result = params.get("return")
                if result == "pil":
                    from PIL import Image
                    return {"predictions": [Image.new("RGB", (4, 3), (255, 0, 0))]}
                if result == "object":
                    return {"predictions": [object()]}
                if result == "list":
                    return ["bare", "list"]
                return {
                    "predictions": [{"echo": data}],
                    "call": call,
                    "max_active": _state["max_active"],
                    "start": started,
                    "end": time.time(),
                    "path": self.path,
                    "path_type": self.path_type,
                    "sys_path0": sys.path[0],
                    "module": __name__,
                    "sibling": fake_sibling.VALUE,
                    "cancelled": list(_state["cancelled"]),
                    "hooked_during_call": self.is_cancelled is not None,
                }
            finally:
                with _lock:
                    _state["active"] -= 1
    '''
)


def write_fake_model_dir(directory: Path, filename: str = "handler.py") -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    (directory / filename).write_text(FAKE_HANDLER)
    (directory / "fake_sibling.py").write_text("VALUE = 'sibling-ok'\n")
    return directory


def load_handler_module(name: str = "avatar_handler_under_test"):
    """Import handlers/handler.py by path (it is shipped as a loose file, not a package)."""
    spec = importlib.util.spec_from_file_location(name, HANDLER_PY)
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module




# ------------------------------------------------------------------------------------------
# studio mode: a studio model directory (handler.py + studio.json) and its manifest


def build_avatar_dir(kind: str, base_dir: Path, out_dir: Path, name: str, *, seed: int) -> Path:
    """A registered model directory of avatar `name` (random LoRA of `seed`), as the store keeps it."""
    write_random_lora(kind, Path(base_dir), Path(out_dir), seed=seed)
    meta = dict(avatar_json(kind, base_dir), name=name, run_id=f"2026010{seed % 10}-000000")
    (Path(out_dir) / "avatar.json").write_text(json.dumps(meta, indent=2))
    return Path(out_dir)


def write_studio_manifest(path: Path, kind: str, base_dir: Path, avatars: dict[str, Path], *, studio: str = "family") -> Path:
    """The manifest the CLI keeps in the store: avatar -> its registered model directory."""
    entries = {name: {"model_uri": str(d), "run_id": json.loads((d / "avatar.json").read_text())["run_id"], "version": "1"}
               for name, d in avatars.items()}
    body = {"schema": 1, "studio": studio, "pipeline": kind, "base_model": str(base_dir), "avatars": entries}
    Path(path).write_text(json.dumps(body, indent=2))
    return Path(path)


def build_studio_dir(kind: str, base_dir: Path, out_dir: Path, manifest: Path, *, studio: str = "family") -> Path:
    """The studio's model directory: handler.py + requirements.txt + studio.json naming the manifest."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    shutil.copy2(HANDLER_PY, out_dir / "handler.py")
    shutil.copy2(HANDLERS_DIR / "requirements.txt", out_dir / "requirements.txt")
    body = {"schema": 1, "studio": studio, "pipeline": kind, "base_model": str(base_dir), "manifest": str(manifest)}
    (out_dir / "studio.json").write_text(json.dumps(body, indent=2))
    return out_dir
