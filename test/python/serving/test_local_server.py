"""handlers/local_server.py against the container contract (research/hf-serving.md §3, §6),
exercised with a fake handler.py so that every case is fast and deterministic."""

from __future__ import annotations

import base64
import json
import signal
import socket
import threading
import time

import pytest
from serving_support import LocalServer, http_request, write_fake_model_dir

VERTEX_HEALTH = "/v1/endpoints/123/deployedModels/456"
VERTEX_PREDICT = "/v1/endpoints/123/deployedModels/456:predict"
VERTEX_ENV = {"AIP_HEALTH_ROUTE": VERTEX_HEALTH, "AIP_PREDICT_ROUTE": VERTEX_PREDICT}
BODY = {"instances": [{"prompt": "a"}], "parameters": {"steps": 30, "width": 1024.0}}


@pytest.fixture(scope="module")
def server(fake_model_dir):
    """One fake-handler server in default (non-Vertex) mode for the quick cases."""
    with LocalServer(fake_model_dir) as srv:
        yield srv


@pytest.fixture(scope="module")
def vertex_server(fake_model_dir):
    with LocalServer(fake_model_dir, aip=VERTEX_ENV) as srv:
        yield srv


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


# --------------------------------------------------------------------------------------------
# routes


def test_vertex_mode_serves_only_the_aip_routes(vertex_server, fake_model_dir):
    srv = vertex_server
    assert srv.health == VERTEX_HEALTH and srv.predict == VERTEX_PREDICT
    assert srv.host == "127.0.0.1"
    status, headers, body = srv.request("GET", VERTEX_HEALTH)
    assert (status, body) == (200, b"Ok")
    assert headers["content-type"].startswith("text/plain")

    status, result = srv.predict_json(BODY)
    assert status == 200
    # the whole body reaches the handler, numbers untouched (1024.0 stays a float)
    assert result["predictions"] == [{"echo": BODY}]
    assert isinstance(result["predictions"][0]["echo"]["parameters"]["width"], float)
    # constructed like the toolkit: str path, model dir first on sys.path, sibling import works
    assert result["path"] == str(fake_model_dir) and result["path_type"] == "str"
    assert result["sys_path0"] == str(fake_model_dir)
    assert result["sibling"] == "sibling-ok"
    assert result["module"] == "handler.EndpointHandler"

    for method, path in [("GET", "/health"), ("GET", "/"), ("POST", "/predict"), ("POST", "/"), ("GET", "/metrics")]:
        status, _, _ = srv.request(method, path, b"{}" if method == "POST" else None,
                                   {"Content-Type": "application/json"} if method == "POST" else None)
        assert status == 404, (method, path)
    status, _, _ = srv.request("GET", VERTEX_PREDICT)
    assert status == 405
    status, _, _ = srv.request("POST", VERTEX_HEALTH, b"{}", {"Content-Type": "application/json"})
    assert status == 405


def test_default_mode_routes(server):
    assert server.health == "/health" and server.predict == "/predict"
    for path in ("/", "/health"):
        status, _, body = server.request("GET", path)
        assert (status, body) == (200, b"Ok"), path
    for path in ("/", "/predict"):
        status, result = server.predict_json({"instances": ["x"]}, path=path)
        assert status == 200 and result["predictions"] == [{"echo": {"instances": ["x"]}}], path
    status, _, _ = server.request("GET", "/nope")
    assert status == 404
    status, _, _ = server.request("POST", "/predict/extra", b"{}", {"Content-Type": "application/json"})
    assert status == 404


# --------------------------------------------------------------------------------------------
# content types, body checks, query parameters


@pytest.mark.parametrize("content_type", ["application/json", "application/json; charset=UTF-8"])
def test_accepted_content_types(server, content_type):
    status, result = server.predict_json(BODY, headers={"Content-Type": content_type})
    assert status == 200 and result["predictions"] == [{"echo": BODY}]


@pytest.mark.parametrize(
    "content_type",
    [
        "application/json; charset=utf-8",
        "application/json;charset=UTF-8",
        "Application/JSON",
        "text/plain",
        "text/csv",
        "image/png",
        "application/x-www-form-urlencoded",
        None,
    ],
)
def test_rejected_content_types(server, content_type):
    headers = {} if content_type is None else {"Content-Type": content_type}
    status, response_headers, body = server.request("POST", "/predict", json.dumps(BODY).encode(), headers)
    assert status == 400
    assert response_headers["content-type"] == "application/json"
    error = json.loads(body)["error"]
    shown = "None" if content_type is None else content_type
    assert error.startswith(f'Content type "{shown}" not supported'), error
    assert "application/json; charset=UTF-8" in error


@pytest.mark.parametrize(
    "raw, fragment",
    [
        (b'{"foo": 1}', "Body needs to provide a inputs key"),
        (b"[1, 2]", "Body needs to provide a inputs key"),
        (b'"instances"', "Body needs to provide a inputs key"),
        (b"{", ""),
        (b"", ""),
        (b"not json", ""),
    ],
)
def test_body_checks(server, raw, fragment):
    status, result = server.predict_json(raw)
    assert status == 400
    assert isinstance(result, dict) and result["error"], result
    assert fragment in result["error"]


def test_inputs_key_is_enough_for_the_server(server):
    status, result = server.predict_json({"inputs": "hello"})
    assert status == 200 and result["predictions"] == [{"echo": {"inputs": "hello"}}]


def test_query_parameters_become_parameters_only_when_absent(server):
    status, result = server.predict_json({"instances": ["x"]}, path="/predict?steps=20&flag=true&off=false&name=abc")
    assert status == 200
    assert result["predictions"][0]["echo"]["parameters"] == {"steps": 20, "flag": True, "off": False, "name": "abc"}
    body = {"instances": ["x"], "parameters": {"seed": 1}}
    status, result = server.predict_json(body, path="/predict?steps=20")
    assert status == 200 and result["predictions"][0]["echo"] == body


# --------------------------------------------------------------------------------------------
# handler results and failures


@pytest.mark.parametrize(
    "raise_type, message, expected",
    [
        ("value", "bad input from handler", "bad input from handler"),
        ("runtime", "boom", "boom"),
        ("key", "x", "'x'"),
        ("exit", "bye", "handler raised SystemExit: bye"),  # and the server keeps running
    ],
)
def test_handler_exceptions_become_400(server, raise_type, message, expected):
    status, result = server.predict_json({"instances": ["x"], "parameters": {"raise": message, "raise_type": raise_type}})
    assert (status, result) == (400, {"error": expected})
    assert server.request("GET", "/health")[0] == 200


def test_pil_results_are_serialized_as_base64_png(server):
    status, result = server.predict_json({"instances": ["x"], "parameters": {"return": "pil"}})
    assert status == 200
    png = base64.b64decode(result["predictions"][0])
    assert png.startswith(b"\x89PNG\r\n\x1a\n")


def test_unserializable_result_is_400(server):
    status, result = server.predict_json({"instances": ["x"], "parameters": {"return": "object"}})
    assert status == 400 and "not JSON serializable" in result["error"]


def test_bare_list_result_passes_through(server):
    status, result = server.predict_json({"instances": ["x"], "parameters": {"return": "list"}})
    assert (status, result) == (200, ["bare", "list"])


@pytest.mark.parametrize(
    "accept, status_expected, fragment",
    [
        ("*/*", 200, None),
        ("application/json", 200, None),
        ("image/png", 400, "Can only serialize PIL.Image.Image"),
        ("application/json; charset=utf-8", 400, "Accept type"),
    ],
)
def test_accept_header(server, accept, status_expected, fragment):
    status, result = server.predict_json({"instances": ["x"]}, headers={"Accept": accept})
    assert status == status_expected
    if fragment:
        assert fragment in result["error"]


# --------------------------------------------------------------------------------------------
# start-up, configuration, shutdown


def test_port_is_not_bound_while_the_handler_is_constructed(fake_model_dir):
    port = free_port()
    srv = LocalServer(fake_model_dir, args=["--model-dir", str(fake_model_dir), "--port", str(port)],
                      env={"FAKE_INIT_SLEEP": "2"})
    started = time.monotonic()
    srv.start()
    try:
        time.sleep(0.8)
        assert srv.proc.poll() is None
        with pytest.raises(ConnectionRefusedError):
            http_request("127.0.0.1", port, "GET", "/health", timeout=2)
        srv.wait_ready(timeout=60)
        assert time.monotonic() - started >= 2.0
        assert srv.port == port and srv.url == f"http://127.0.0.1:{port}"
        assert http_request("127.0.0.1", port, "GET", "/health")[0] == 200
    finally:
        assert srv.stop() == 0


def test_handler_construction_failure_exits_non_zero(fake_model_dir):
    srv = LocalServer(fake_model_dir, env={"FAKE_INIT_FAIL": "weights are corrupt"}).start()
    code = srv.wait_exit(timeout=60)
    assert code == 3
    assert "weights are corrupt" in srv.stderr()
    assert not any(line.startswith("ready") for line in srv.stdout_lines)


def test_missing_model_dir_or_handler_exits_non_zero(tmp_path):
    srv = LocalServer(tmp_path / "does-not-exist").start()
    assert srv.wait_exit(timeout=60) == 3
    assert "does not exist" in srv.stderr()
    empty = tmp_path / "empty"
    empty.mkdir()
    srv = LocalServer(empty).start()
    assert srv.wait_exit(timeout=60) == 3
    assert "no handler.py" in srv.stderr()


@pytest.mark.parametrize(
    "env, fragment",
    [
        ({"AIP_PREDICT_ROUTE": VERTEX_PREDICT}, "AIP_PREDICT_ROUTE and AIP_HEALTH_ROUTE need to be set"),
        ({"AIP_HEALTH_ROUTE": VERTEX_HEALTH}, "AIP_PREDICT_ROUTE and AIP_HEALTH_ROUTE need to be set"),
        ({"AIP_HTTP_PORT": "", **VERTEX_ENV}, "AIP_HTTP_PORT"),
        ({"AIP_HTTP_PORT": "http", **VERTEX_ENV}, "AIP_HTTP_PORT must be a port number"),
        ({"AIP_HTTP_PORT": "70000", **VERTEX_ENV}, "between 0 and 65535"),
        ({"AIP_HEALTH_ROUTE": "health", "AIP_PREDICT_ROUTE": VERTEX_PREDICT}, "must be a path starting with '/'"),
    ],
)
def test_vertex_mode_configuration_errors_exit_1(fake_model_dir, env, fragment):
    srv = LocalServer(fake_model_dir, aip=env, env={"FAKE_INIT_FAIL": "must not be constructed"}).start()
    assert srv.wait_exit(timeout=60) == 1
    stderr = srv.stderr()
    assert fragment in stderr
    assert "must not be constructed" not in stderr


def test_model_dir_from_env_and_custom_handler_file_name(tmp_path):
    model_dir = write_fake_model_dir(tmp_path / "m", filename="custom_handler.py")
    env = {"HF_MODEL_DIR": str(model_dir), "HF_DEFAULT_PIPELINE_NAME": "custom_handler.py"}
    with LocalServer(model_dir, env=env, args=["--port", "0"]) as srv:
        status, result = srv.predict_json({"instances": ["x"]})
        assert status == 200
        assert result["path"] == str(model_dir)
        assert result["module"] == "custom_handler.EndpointHandler"


def test_port_in_use_exits_1(fake_model_dir):
    with socket.socket() as blocker:
        blocker.bind(("127.0.0.1", 0))
        blocker.listen()
        port = blocker.getsockname()[1]
        srv = LocalServer(fake_model_dir, args=["--model-dir", str(fake_model_dir), "--port", str(port)]).start()
        assert srv.wait_exit(timeout=60) == 1
        assert "cannot bind" in srv.stderr()


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_signals_shut_down_cleanly(fake_model_dir, sig):
    srv = LocalServer(fake_model_dir).start().wait_ready(timeout=60)
    assert srv.request("GET", "/health")[0] == 200
    assert srv.stop(sig, timeout=30) == 0
    assert "Traceback" not in srv.stderr()


def test_sigterm_during_a_long_inference_exits_0_promptly(fake_model_dir):
    srv = LocalServer(fake_model_dir).start().wait_ready(timeout=60)
    import threading

    outcome = {}

    def long_request():
        try:
            outcome["result"] = srv.predict_json({"instances": ["x"], "parameters": {"sleep": 60}}, timeout=90)
        except Exception as exc:  # noqa: BLE001 - the connection is expected to be dropped
            outcome["error"] = exc

    thread = threading.Thread(target=long_request, daemon=True)
    thread.start()
    time.sleep(0.5)
    started = time.monotonic()
    assert srv.stop(signal.SIGTERM, timeout=30) == 0
    assert time.monotonic() - started < 20
    thread.join(timeout=10)
    # the 60 s inference never completed: the request cut off by the graceful-shutdown timeout is
    # answered in the {"error": ...} contract, not with uvicorn's plain-text 500
    assert outcome.get("result") == (503, {"error": "the server is shutting down; the request was not finished"}), outcome


def test_sigterm_while_constructing_exits_0(fake_model_dir):
    srv = LocalServer(fake_model_dir, env={"FAKE_INIT_SLEEP": "60"}).start()
    time.sleep(1.5)
    started = time.monotonic()
    assert srv.stop(signal.SIGTERM, timeout=20) == 0
    assert time.monotonic() - started < 10


def test_binds_loopback_by_default_and_honours_host(fake_model_dir):
    with LocalServer(fake_model_dir) as srv:
        assert srv.host == "127.0.0.1"
    with LocalServer(fake_model_dir, args=["--model-dir", str(fake_model_dir), "--port", "0", "--host", "localhost"]) as srv:
        assert srv.url.startswith("http://localhost:")
        assert srv.request("GET", "/health")[0] == 200


# --------------------------------------------------------------------------------------------
# a client that goes away


def send_and_leave(srv, body, after: float):
    """POST and give up after `after` seconds (a client timeout, Ctrl-C): the connection closes."""
    with pytest.raises(TimeoutError):
        srv.predict_json(body, timeout=after)


def test_a_client_that_goes_away_is_cancelled_and_the_queue_moves_on(fake_model_dir):
    """A runs a cancellable 20 s job and its client leaves after 1 s; C, queued behind it, leaves
    after 0.5 s; B, queued last, stays. A stops at its next step, C never starts, B is served."""
    with LocalServer(fake_model_dir) as srv:
        runner = threading.Thread(target=send_and_leave, args=(srv, {"instances": ["a"], "parameters": {"id": "A", "steps_of_50ms": 400}}, 1.0))
        runner.start()
        time.sleep(0.3)
        queued = threading.Thread(target=send_and_leave, args=(srv, {"instances": ["c"], "parameters": {"id": "C", "steps_of_50ms": 400}}, 0.5))
        queued.start()
        time.sleep(0.1)
        status, result = srv.predict_json({"instances": ["b"], "parameters": {"id": "B"}}, timeout=60)
        runner.join(timeout=10)
        queued.join(timeout=10)
        stderr = srv.stderr()
    assert status == 200, result
    [cancelled] = result["cancelled"]
    assert cancelled["id"] == "A" and 1 <= cancelled["step"] < 400  # stopped early, not after 20 s
    assert result["call"] == 2  # C never reached the handler
    assert result["hooked_during_call"] is True
    assert stderr.count("the client went away; cancelling its request") == 2
    assert "Traceback" not in stderr
