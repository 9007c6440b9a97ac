"""Fixtures for the serving tests: model directories, handlers, a fake handler for the server.

The shared `test/python/conftest.py` already forces HF_HUB_OFFLINE=1 and provides the tiny
pipelines (`tiny_sd15_dir`, `tiny_sdxl_dir`); subprocesses inherit that environment.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))

from serving_support import (  # noqa: E402
    CONSTRUCTION_SECONDS,
    IMAGE_SECONDS,
    SD15_HEALTH,
    SD15_PREDICT,
    LocalServer,
    build_model_dir,
    load_handler_module,
    write_fake_model_dir,
)


@pytest.fixture(scope="session")
def fake_model_dir(tmp_path_factory) -> Path:
    return write_fake_model_dir(tmp_path_factory.mktemp("fake-model"))


@pytest.fixture(scope="session")
def handler_module():
    return load_handler_module()


@pytest.fixture(scope="session")
def sd15_model_dir(tiny_sd15_dir, tmp_path_factory) -> Path:
    return build_model_dir("sd15", tiny_sd15_dir, tmp_path_factory.mktemp("model-sd15"))


@pytest.fixture(scope="session")
def sdxl_model_dir(tiny_sdxl_dir, tmp_path_factory) -> Path:
    return build_model_dir("sdxl", tiny_sdxl_dir, tmp_path_factory.mktemp("model-sdxl"))


@pytest.fixture(scope="session")
def sd15_server(sd15_model_dir):
    """The real handler on the tiny SD 1.x model behind local_server.py in Vertex mode, shared."""
    with LocalServer(sd15_model_dir, aip={"AIP_HEALTH_ROUTE": SD15_HEALTH, "AIP_PREDICT_ROUTE": SD15_PREDICT}) as srv:
        yield srv


def _construct(handler_module, model_dir: Path, kind: str):
    started = time.perf_counter()
    handler = handler_module.EndpointHandler(str(model_dir))
    CONSTRUCTION_SECONDS[kind] = time.perf_counter() - started
    return handler


@pytest.fixture(scope="session")
def _torch_threads_restored():
    """The handler sets one torch thread for tiny-kit bases, process-wide: undo it afterwards."""
    import torch

    before = torch.get_num_threads()
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="session")
def sd15_handler(handler_module, sd15_model_dir, _torch_threads_restored):
    return _construct(handler_module, sd15_model_dir, "sd15")


@pytest.fixture(scope="session")
def sdxl_handler(handler_module, sdxl_model_dir, _torch_threads_restored):
    return _construct(handler_module, sdxl_model_dir, "sdxl")


@pytest.fixture(params=["sd15", "sdxl"])
def kind_handler(request):
    """(kind, handler, model_dir) for each pipeline family."""
    kind = request.param
    return kind, request.getfixturevalue(f"{kind}_handler"), request.getfixturevalue(f"{kind}_model_dir")


def pytest_terminal_summary(terminalreporter):
    """Measurements for the record (not assertions): handler construction, per-image latency."""
    if CONSTRUCTION_SECONDS:
        text = ", ".join(f"{k} {v:.2f}s" for k, v in sorted(CONSTRUCTION_SECONDS.items()))
        terminalreporter.write_line(f"serving: EndpointHandler construction: {text}")
    for kind in sorted({k for k, _ in IMAGE_SECONDS}):
        values = sorted(t for k, t in IMAGE_SECONDS if k == kind)
        terminalreporter.write_line(
            f"serving: {kind} seconds per image (256 px, 1 step, CPU): p50 {values[len(values) // 2]:.2f} "
            f"over {len(values)} calls"
        )
