#!/usr/bin/env python3
"""A local stand-in for the Hugging Face PyTorch inference container on Vertex AI.

It serves a model directory (``handler.py`` + weights + ``avatar.json``) the way the
container's inference toolkit does (see the project's research notes, hf-serving.md §3, §6):

* ``AIP_MODE=PREDICTION``: listen on ``AIP_HTTP_PORT`` and serve only ``GET AIP_HEALTH_ROUTE``
  and ``POST AIP_PREDICT_ROUTE`` (missing variables: message + exit 1). Otherwise listen on
  ``--port`` (default 5000) with ``GET /``, ``GET /health``, ``POST /``, ``POST /predict``.
* ``handler.py`` is imported from the model directory with that directory first on ``sys.path``
  and ``EndpointHandler(str(model_dir))`` is constructed *before* the port is bound; if that
  fails, the process exits non-zero (3, like uvicorn's failed application start-up).
* health answers ``200 "Ok"`` (text/plain) and stays responsive during an inference.
* predict accepts Content-Type exactly ``application/json`` or ``application/json; charset=UTF-8``,
  requires an ``instances`` or ``inputs`` key, moves query parameters into ``parameters`` when the
  body has none, passes the whole body to the handler in a worker thread, one request at a time in
  arrival order, and answers the handler's return value as JSON. Any exception on that path
  becomes ``400 {"error": "<message>"}``.
* SIGTERM / SIGINT: graceful shutdown, exit 0.

Differences from the container, on purpose: binds 127.0.0.1 unless ``--host`` says otherwise;
a missing ``AIP_HTTP_PORT`` in Vertex mode is an error (the 4.48 entrypoint would fall back to
5000); no GCS copy and no ``pip install -r requirements.txt`` (the local environment is pinned to
the image's versions already); only the JSON deserializer (the toolkit's image/audio ones are
useless for this handler, which rejects such bodies anyway); no ``/metrics`` route; long bodies
are truncated in the "needs a inputs key" message; a daemon inference thread instead of anyio's
pool (shutdown never waits more than a few seconds for an inference; requests cut off by it get
``503 {"error": ...}``); a 1 ms GIL switch interval so health stays fast while the handler runs
Python; a request whose client has gone away (timeout, Ctrl-C) is cancelled: it never starts if
still queued, and a handler with an ``is_cancelled`` attribute (handler.py) is told, so it stops
at its next denoising step instead of holding the GPU (the toolkit would run it to the end).

Usage: python handlers/local_server.py [--model-dir DIR] [--host 127.0.0.1] [--port 5000]
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import importlib.util
import io
import logging
import os
import queue
import signal
import socket
import sys
import threading
import time
from pathlib import Path
from typing import Any, Callable

DEFAULT_MODEL_DIR = "/opt/huggingface/model"
DEFAULT_PORT = 5000
SUPPORTED_CONTENT_TYPES = ("application/json", "application/json; charset=UTF-8")
# Seconds to let in-flight requests finish after SIGTERM/SIGINT before they are dropped.
GRACEFUL_SHUTDOWN_SECONDS = 5
# How often a waiting request checks whether its client is still connected.
DISCONNECT_POLL_SECONDS = 0.2

EXIT_CONFIG = 1  # bad environment / arguments / port in use
EXIT_STARTUP = 3  # the handler could not be imported or constructed

log = logging.getLogger("avatar.local_server")


class ConfigError(Exception):
    """A problem with the environment or the command line (exit 1)."""


class _StopRequested(BaseException):
    """Raised by the signal handler while the handler is being constructed."""


# --------------------------------------------------------------------------------------------
# configuration


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="local_server.py",
        description="Serve a model directory with its handler.py like the HF inference container.",
    )
    parser.add_argument(
        "--model-dir",
        help=f"model directory (default: $HF_MODEL_DIR or {DEFAULT_MODEL_DIR})",
    )
    parser.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1)")
    parser.add_argument(
        "--port",
        type=int,
        help=f"port when AIP_MODE is not PREDICTION (default {DEFAULT_PORT}; 0 = pick a free one)",
    )
    return parser.parse_args(argv)


def _parse_port(text: str, source: str) -> int:
    try:
        port = int(text.strip())
    except ValueError:
        raise ConfigError(f"{source} must be a port number, got {text!r}") from None
    if not 0 <= port <= 65535:
        raise ConfigError(f"{source} must be between 0 and 65535, got {port}")
    return port


def _check_route(value: str, name: str) -> str:
    if not value.startswith("/"):
        raise ConfigError(f"{name} must be a path starting with '/', got {value!r}")
    return value


def resolve_config(args: argparse.Namespace, env: dict[str, str]) -> dict[str, Any]:
    """Turn arguments + environment into host, port, routes and model directory."""
    vertex_mode = env.get("AIP_MODE", "") == "PREDICTION"
    if vertex_mode:
        health = env.get("AIP_HEALTH_ROUTE", "")
        predict = env.get("AIP_PREDICT_ROUTE", "")
        if not health or not predict:
            raise ConfigError(
                "AIP_PREDICT_ROUTE and AIP_HEALTH_ROUTE need to be set in Vertex AI environment "
                "(AIP_MODE=PREDICTION)"
            )
        port_text = env.get("AIP_HTTP_PORT", "")
        if not port_text:
            raise ConfigError("AIP_HTTP_PORT needs to be set in Vertex AI environment (AIP_MODE=PREDICTION)")
        port = _parse_port(port_text, "AIP_HTTP_PORT")
        if args.port is not None:
            log.warning("--port is ignored when AIP_MODE=PREDICTION (AIP_HTTP_PORT=%s wins)", port)
        health_routes = [_check_route(health, "AIP_HEALTH_ROUTE")]
        predict_routes = [_check_route(predict, "AIP_PREDICT_ROUTE")]
    else:
        port = DEFAULT_PORT if args.port is None else _parse_port(str(args.port), "--port")
        health_routes = ["/", "/health"]
        predict_routes = ["/", "/predict"]
    model_dir = Path(args.model_dir or env.get("HF_MODEL_DIR") or DEFAULT_MODEL_DIR)
    return {
        "vertex_mode": vertex_mode,
        "host": args.host,
        "port": port,
        "health_routes": health_routes,
        "predict_routes": predict_routes,
        "model_dir": model_dir,
        "handler_file": env.get("HF_DEFAULT_PIPELINE_NAME") or "handler.py",
        "module_name": env.get("HF_MODULE_NAME") or "",
    }


# --------------------------------------------------------------------------------------------
# handler loading (what the toolkit does for a custom handler.py)


def load_handler(model_dir: Path, handler_file: str, module_name: str) -> Callable[[Any], Any]:
    if not model_dir.is_dir():
        raise FileNotFoundError(f"model directory {str(model_dir)!r} does not exist")
    handler_path = model_dir / handler_file
    if not handler_path.is_file():
        raise FileNotFoundError(
            f"no {handler_file} in {str(model_dir)!r}: this stand-in serves custom handlers only"
        )
    module_name = module_name or f"{Path(handler_file).stem}.EndpointHandler"
    spec = importlib.util.spec_from_file_location(module_name, handler_path)
    if spec is None or spec.loader is None:
        raise ImportError(f"cannot import {handler_path}")
    # Like the toolkit: sibling modules of handler.py are importable.
    sys.path.insert(0, str(model_dir))
    module = importlib.util.module_from_spec(spec)
    sys.modules[module_name] = module
    spec.loader.exec_module(module)
    handler_class = getattr(module, "EndpointHandler", None)
    if handler_class is None:
        raise AttributeError(f"{handler_path} defines no EndpointHandler class")
    return handler_class(str(model_dir))


# --------------------------------------------------------------------------------------------
# request handling


def _query_value(value: str) -> Any:
    """Query parameters arrive as strings: integers become int, true/false become bool."""
    if value.isdigit():
        return int(value)
    if value.lower() in ("true", "false"):
        return value.lower() == "true"
    return value


def _json_default(obj: Any) -> Any:
    """orjson fallback: PIL images become base64 PNG (as in the toolkit), anything else fails."""
    try:
        from PIL import Image
    except ImportError:  # pragma: no cover - pillow is always there in the image
        Image = None
    if Image is not None and isinstance(obj, Image.Image):
        buffer = io.BytesIO()
        obj.save(buffer, format="PNG")
        return base64.b64encode(buffer.getvalue()).decode("ascii")
    raise TypeError(f"Type is not JSON serializable: {type(obj).__name__}")


def _abbreviate(text: str, limit: int = 200) -> str:
    return text if len(text) <= limit else f"{text[:limit]}… ({len(text)} characters)"


class InferenceWorker:
    """One daemon thread running the handler: one inference at a time, in submission order.

    A daemon thread (not anyio's worker pool) so that shutdown never waits for a long inference.
    Each job carries a cancel event, set when its client goes away: a job cancelled while queued
    never starts, and a running one is stopped by the handler at its next denoising step when
    the handler has the optional ``is_cancelled`` hook (handler.py does; the HF toolkit never
    sets it, so in the real container requests always run to the end).
    """

    def __init__(self, handler: Callable[[Any], Any]):
        self._handler = handler
        self._jobs: queue.SimpleQueue = queue.SimpleQueue()
        self.busy = False
        self._thread = threading.Thread(target=self._run, name="inference", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while True:
            body, future, loop, cancel = self._jobs.get()
            if cancel.is_set():
                gone = RequestGone("the client went away before the request started")
                loop.call_soon_threadsafe(_settle, future, None, gone)
                continue
            self.busy = True
            hooked = hasattr(self._handler, "is_cancelled")
            try:
                if hooked:
                    self._handler.is_cancelled = cancel.is_set
                result = self._handler(body)
            except BaseException as exc:  # noqa: BLE001 - every failure goes back to the request
                if not isinstance(exc, Exception):  # e.g. SystemExit from a handler: still just a 400
                    exc = RuntimeError(f"handler raised {type(exc).__name__}: {exc}")
                loop.call_soon_threadsafe(_settle, future, None, exc)
            else:
                loop.call_soon_threadsafe(_settle, future, result, None)
            finally:
                if hooked:
                    self._handler.is_cancelled = None
                self.busy = False

    def submit(self, body: Any) -> tuple[asyncio.Future, threading.Event]:
        """Queue a job; returns its future and the event that cancels it."""
        loop = asyncio.get_running_loop()
        future = loop.create_future()
        cancel = threading.Event()
        self._jobs.put((body, future, loop, cancel))
        return future, cancel


class RequestGone(Exception):
    """The client disconnected before its request was served."""


async def run_until_done_or_gone(request: Any, future: asyncio.Future, cancel: threading.Event) -> Any:
    """Await the job, polling the connection: a client that went away (timeout, Ctrl-C) cancels
    its job, so that it does not hold the GPU while the requests queued behind it wait."""
    while True:
        done, _ = await asyncio.wait({future}, timeout=DISCONNECT_POLL_SECONDS)
        if done:
            return future.result()
        if not cancel.is_set() and await request.is_disconnected():
            log.warning("predict: the client went away; cancelling its request")
            cancel.set()


def _settle(future: asyncio.Future, result: Any, exc: BaseException | None) -> None:
    if future.done():  # the request was cancelled meanwhile
        return
    if exc is not None:
        future.set_exception(exc)
    else:
        future.set_result(result)


def build_app(worker: InferenceWorker, health_routes: list[str], predict_routes: list[str]):
    import orjson
    from starlette.applications import Starlette
    from starlette.requests import Request
    from starlette.responses import PlainTextResponse, Response
    from starlette.routing import Route

    def error(message: str, status: int = 400) -> Response:
        return Response(orjson.dumps({"error": message}), status_code=status, media_type="application/json")

    async def health(request: Request) -> Response:
        return PlainTextResponse("Ok")

    async def predict(request: Request) -> Response:
        started = time.perf_counter()
        try:
            content_type = request.headers.get("content-type")
            if content_type not in SUPPORTED_CONTENT_TYPES:
                raise ValueError(
                    f'Content type "{content_type}" not supported. '
                    f"Supported content types are: {', '.join(SUPPORTED_CONTENT_TYPES)}"
                )
            body = orjson.loads(await request.body())
            if not isinstance(body, dict) or ("inputs" not in body and "instances" not in body):
                received = orjson.dumps(body).decode("utf-8", "replace")
                raise ValueError(f"Body needs to provide a inputs key, received: {_abbreviate(received)}")
            if request.query_params and "parameters" not in body:
                body["parameters"] = {k: _query_value(v) for k, v in request.query_params.items()}

            future, cancel = worker.submit(body)
            result = await run_until_done_or_gone(request, future, cancel)

            accept = request.headers.get("accept")
            if accept in (None, "", "*/*", "application/json"):
                payload = orjson.dumps(result, option=orjson.OPT_SERIALIZE_NUMPY, default=_json_default)
                response = Response(payload, media_type="application/json")
            elif accept.startswith("image/"):
                from PIL import Image

                if not isinstance(result, Image.Image):
                    raise ValueError(f"Can only serialize PIL.Image.Image, got {type(result)}")
                buffer = io.BytesIO()
                result.save(buffer, format=accept.split("/", 1)[1].upper())
                response = Response(buffer.getvalue(), media_type=accept)
            else:
                raise ValueError(f'Accept type "{accept}" not supported')
        except Exception as exc:  # noqa: BLE001 - the container turns every failure into a 400
            log.error("predict failed: %s: %s", type(exc).__name__, _abbreviate(str(exc), 500))
            return error(str(exc))
        except asyncio.CancelledError:
            # uvicorn cancels requests still running when its graceful shutdown times out; answer
            # in the {"error": ...} contract instead of its plain-text 500.
            log.error("predict cancelled: the server is shutting down")
            return error("the server is shutting down; the request was not finished", 503)
        log.info("predict ok in %.3fs", time.perf_counter() - started)
        return response

    routes = [Route(path, health, methods=["GET"]) for path in health_routes]
    routes += [Route(path, predict, methods=["POST"]) for path in predict_routes]
    return Starlette(routes=routes)


# --------------------------------------------------------------------------------------------
# main


def _logging_config() -> dict[str, Any]:
    """uvicorn's default logging, but everything on stderr (stdout carries only the ready line)."""
    from uvicorn.config import LOGGING_CONFIG

    config = {key: (dict(value) if isinstance(value, dict) else value) for key, value in LOGGING_CONFIG.items()}
    config["handlers"] = {name: dict(handler) for name, handler in LOGGING_CONFIG["handlers"].items()}
    config["handlers"]["access"]["stream"] = "ext://sys.stderr"
    config["loggers"] = dict(LOGGING_CONFIG["loggers"])
    config["loggers"]["avatar"] = {"handlers": ["default"], "level": "INFO", "propagate": False}
    return config


def _url_host(host: str) -> str:
    return f"[{host}]" if ":" in host else host


def main(argv: list[str] | None = None) -> int:
    logging.basicConfig(level=logging.INFO, stream=sys.stderr, format="%(levelname)s: %(message)s")
    args = parse_args(argv)
    try:
        config = resolve_config(args, dict(os.environ))
    except ConfigError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_CONFIG

    # Until the server runs, SIGTERM/SIGINT abort the (possibly long) model load cleanly.
    stop = {"requested": False}

    def stop_during_load(signum, frame):
        raise _StopRequested()

    signal.signal(signal.SIGTERM, stop_during_load)
    signal.signal(signal.SIGINT, stop_during_load)

    started = time.perf_counter()
    try:
        handler = load_handler(config["model_dir"], config["handler_file"], config["module_name"])
    except _StopRequested:
        print("stopped while loading the handler", file=sys.stderr)
        return 0
    except BaseException as exc:  # noqa: BLE001 - any failure here means the model cannot serve
        log.exception("handler construction failed: %s", exc)
        print(f"error: could not start the handler from {config['model_dir']}: {exc}", file=sys.stderr)
        print("Application startup failed. Exiting.", file=sys.stderr)
        return EXIT_STARTUP
    log.info("handler constructed in %.2fs", time.perf_counter() - started)

    # From here on uvicorn handles the signals; one arriving before it takes over is remembered.
    # uvicorn re-raises the signals it caught after a graceful shutdown: these no-op handlers
    # make that a clean exit 0 instead of a KeyboardInterrupt / death by SIGTERM.
    def remember_stop(signum, frame):
        stop["requested"] = True

    signal.signal(signal.SIGTERM, remember_stop)
    signal.signal(signal.SIGINT, remember_stop)

    # The event loop needs the GIL a few times per request; when the handler's thread holds it
    # (Python-level work between torch ops), each hand-over can take the default 5 ms switch
    # interval. 1 ms keeps health answers fast during an inference at negligible cost.
    sys.setswitchinterval(0.001)

    host, port = config["host"], config["port"]
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
        family, _, _, _, address = infos[0]
        sock = socket.socket(family, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(address)
    except OSError as exc:
        print(f"error: cannot bind {host}:{port}: {exc}", file=sys.stderr)
        return EXIT_CONFIG
    bound_port = sock.getsockname()[1]

    import uvicorn

    worker = InferenceWorker(handler)
    app = build_app(worker, config["health_routes"], config["predict_routes"])
    ready_line = (
        f"ready url=http://{_url_host(host)}:{bound_port} "
        f"health={config['health_routes'][-1]} predict={config['predict_routes'][-1]}"
    )

    class Server(uvicorn.Server):
        async def startup(self, sockets=None):
            await super().startup(sockets=sockets)
            if stop["requested"]:
                self.should_exit = True
            elif not self.should_exit:
                print(ready_line, flush=True)

    server = Server(
        uvicorn.Config(
            app,
            lifespan="off",
            log_config=_logging_config(),
            timeout_graceful_shutdown=GRACEFUL_SHUTDOWN_SECONDS,
        )
    )
    server.run(sockets=[sock])
    sys.stdout.flush()
    sys.stderr.flush()
    if worker.busy:
        # An inference is still running in the daemon thread: don't wait for it.
        os._exit(0)
    return 0


if __name__ == "__main__":
    sys.exit(main())
