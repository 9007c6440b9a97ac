"""Fixtures for the serving tests: model directories, handlers, a fake handler for the server.

The shared `test/python/conftest.py` already forces HF_HUB_OFFLINE=1 and provides the tiny
pipelines (`tiny_sd15_dir`, `tiny_sdxl_dir`); subprocesses inherit that environment.
"""

from __future__ import annotations

import importlib.util
import sys
import textwrap
import time
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))

from serving_support import HANDLER_PY, build_model_dir  # noqa: E402

# A stand-in handler.py for testing the server's contract cheaply. Its behaviour is driven by the
# request's "parameters" (sleep / spin / raise / return) and by FAKE_INIT_* environment variables.
FAKE_HANDLER = textwrap.dedent(
    '''
    import os, sys, threading, time

    import fake_sibling  # importable only if the server put the model dir on sys.path

    _lock = threading.Lock()
    _state = {"calls": 0, "active": 0, "max_active": 0}


    class EndpointHandler:
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
                if "spin" in params:  # pure-Python busy loop: holds the GIL as much as it can
                    end = time.perf_counter() + params["spin"]
                    x = 0
                    while time.perf_counter() < end:
                        x += 1
                if "raise" in params:
                    kind = {"value": ValueError, "runtime": RuntimeError, "key": KeyError}[params.get("raise_type", "value")]
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


@pytest.fixture(scope="session")
def fake_model_dir(tmp_path_factory) -> Path:
    return write_fake_model_dir(tmp_path_factory.mktemp("fake-model"))


def load_handler_module(name: str = "avatar_handler_under_test"):
    """Import handlers/handler.py by path (it is shipped as a loose file, not a package)."""
    spec = importlib.util.spec_from_file_location(name, HANDLER_PY)
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="session")
def handler_module():
    return load_handler_module()


@pytest.fixture(scope="session")
def sd15_model_dir(tiny_sd15_dir, tmp_path_factory) -> Path:
    return build_model_dir("sd15", tiny_sd15_dir, tmp_path_factory.mktemp("model-sd15"))


@pytest.fixture(scope="session")
def sdxl_model_dir(tiny_sdxl_dir, tmp_path_factory) -> Path:
    return build_model_dir("sdxl", tiny_sdxl_dir, tmp_path_factory.mktemp("model-sdxl"))


# Construction times are recorded for the report (pytest -s prints them at the end).
CONSTRUCTION_SECONDS: dict[str, float] = {}


def _construct(handler_module, model_dir: Path, kind: str):
    started = time.perf_counter()
    handler = handler_module.EndpointHandler(str(model_dir))
    CONSTRUCTION_SECONDS[kind] = time.perf_counter() - started
    return handler


@pytest.fixture(scope="session")
def sd15_handler(handler_module, sd15_model_dir):
    return _construct(handler_module, sd15_model_dir, "sd15")


@pytest.fixture(scope="session")
def sdxl_handler(handler_module, sdxl_model_dir):
    return _construct(handler_module, sdxl_model_dir, "sdxl")


@pytest.fixture(params=["sd15", "sdxl"])
def kind_handler(request):
    """(kind, handler, model_dir) for each pipeline family."""
    kind = request.param
    return kind, request.getfixturevalue(f"{kind}_handler"), request.getfixturevalue(f"{kind}_model_dir")


def pytest_terminal_summary(terminalreporter):
    if CONSTRUCTION_SECONDS:
        text = ", ".join(f"{k} {v:.2f}s" for k, v in sorted(CONSTRUCTION_SECONDS.items()))
        terminalreporter.write_line(f"serving: EndpointHandler construction: {text}")
