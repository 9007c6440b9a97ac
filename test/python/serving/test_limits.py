"""Serving limits (issue #13 item 2): what would not fit the GPU's memory, the endpoint's time limit
or its response limit is refused before any work, with a message naming the limit and what fits.

The tables in handler.py are estimates; these tests pin the rules built on them (which limit
binds where, what the message advises), not the hardware.
"""

from __future__ import annotations

import logging

import pytest

SHARED = {"timeout_s": 60.0, "max_bytes": 1_500_000}  # Vertex shared public endpoint: the defaults
DEDICATED = {"timeout_s": 600.0, "max_bytes": 10_000_000}  # so that memory is the binding limit


def params(size, num_images=1, steps=30, guidance=7.0, fmt="jpeg"):
    return {"width": size, "height": size, "num_images": num_images, "steps": steps, "guidance": guidance,
            "format": fmt}


# (id, device, kind, total images, parameters, endpoint limits, expected fragment or None = fits)
CASES = [
    # memory: one pipeline call holds num_images images; the VAE decodes one at a time, tiled above 1024
    ("t4-sdxl-1024-3-per-prompt-fit", "t4", "sdxl", 3, params(1024, 3), DEDICATED, None),
    ("t4-sdxl-1024-4-per-prompt-oom", "t4", "sdxl", 4, params(1024, 4), DEDICATED,
     "4 images of 1024x1024 per prompt need about 16.0 GiB on an NVIDIA T4 (14.7 GiB); at most 3 per prompt fit"),
    ("t4-sdxl-1536-one-fits-tiled", "t4", "sdxl", 1, params(1536, 1), DEDICATED, None),
    ("t4-sdxl-1536-two-oom", "t4", "sdxl", 2, params(1536, 2), DEDICATED,
     "at most 1 per prompt fit (parameters.num_images <= 1)"),
    ("l4-sdxl-1024-8-per-prompt-fit", "l4", "sdxl", 8, params(1024, 8, steps=10), DEDICATED, None),
    ("t4-sd15-1536-2-per-prompt-fit", "t4", "sd15", 2, params(1536, 2, steps=10), DEDICATED, None),
    ("t4-sd15-1536-3-per-prompt-oom", "t4", "sd15", 3, params(1536, 3, steps=10), DEDICATED,
     "at most 2 per prompt fit (parameters.num_images <= 2)"),
    # time: instances x num_images images, one after the other
    ("t4-sdxl-1024-one-in-60s", "t4", "sdxl", 1, params(1024), SHARED, None),
    ("t4-sdxl-1024-two-over-60s", "t4", "sdxl", 2, params(1024), SHARED,
     "2 images of 1024x1024 at 30 steps would take about 92 s on an NVIDIA T4, over the endpoint's 60 s limit "
     "(AVATAR_PREDICT_TIMEOUT_S); at most 1 image of that size and steps fit in one request: split it"),
    ("t4-sdxl-45-steps", "t4", "sdxl", 1, params(1024, steps=45), SHARED,
     "even one image needs about 68 s: ask for at most 39 steps at 1024x1024"),
    ("t4-sdxl-45-steps-no-cfg-fits", "t4", "sdxl", 1, params(1024, steps=45, guidance=1.0), SHARED, None),
    ("l4-sdxl-1024-five-over-60s", "l4", "sdxl", 5, params(1024), SHARED,
     "at most 4 images of that size and steps fit in one request"),
    ("t4-sd15-512-8x1", "t4", "sd15", 8, params(512), SHARED, None),
    ("t4-sd15-512-8x8-over-60s", "t4", "sd15", 64, params(512, 8), SHARED,
     "64 images of 512x512 at 30 steps would take about 262 s"),
    # response size (base64 JPEG/PNG), before generating
    ("l4-sdxl-1024-two-jpeg-fit", "l4", "sdxl", 2, params(1024, 2), SHARED, None),
    ("l4-sdxl-1024-three-jpeg-too-big", "l4", "sdxl", 3, params(1024), SHARED,
     "the response would be about 1.9 MB for 3 images of 1024x1024 (jpeg)"),
    ("t4-sd15-1024-png-too-big", "t4", "sd15", 1, params(1024, fmt="png"), SHARED,
     "the response would be about 2.8 MB for 1 image of 1024x1024 (png), over the 1500000-byte limit of a shared "
     "Vertex endpoint (AVATAR_MAX_RESPONSE_BYTES); ask for a smaller width/height or format jpeg"),
    ("t4-sd15-512-png-fits", "t4", "sd15", 1, params(512, fmt="png"), SHARED, None),
]


@pytest.mark.parametrize("device, kind, images, request_params, limits, expected", [c[1:] for c in CASES],
                         ids=[c[0] for c in CASES])
def test_refusal_table(handler_module, device, kind, images, request_params, limits, expected):
    row = handler_module.DEVICES[device]
    reason = handler_module.refusal(kind, row, row.memory_gib, images, request_params, **limits)
    if expected is None:
        assert reason is None
    else:
        assert reason is not None and expected in reason, reason


def test_a_dedicated_endpoint_lifts_the_size_and_time_limits(handler_module):
    """The same request, refused on a shared endpoint, fits with a dedicated endpoint's limits."""
    l4 = handler_module.DEVICES["l4"]
    request_params = params(1024, 1)
    assert handler_module.refusal("sdxl", l4, 22.0, 8, request_params, **SHARED)
    assert handler_module.refusal("sdxl", l4, 22.0, 8, request_params, timeout_s=600, max_bytes=10_000_000) is None


def test_cpu_limits_are_bounded_and_the_tiny_model_has_its_own_rates(handler_module):
    cpu = handler_module.DEVICES["cpu"]
    eight_by_eight = params(256, 8)
    reason = handler_module.refusal("sd15", cpu, None, 64, eight_by_eight, timing_kind="tiny", **SHARED)
    assert "64 images of 256x256 at 30 steps would take about 127 s on this CPU" in reason
    assert "at most 30 images of that size and steps fit in one request: split it" in reason
    # with a local client's 600 s, the response size is what refuses it
    reason = handler_module.refusal("sd15", cpu, None, 64, eight_by_eight, timing_kind="tiny", timeout_s=600,
                                    max_bytes=1_500_000)
    assert "the response would be about 2.5 MB for 64 images of 256x256 (jpeg)" in reason
    assert "at most 37 images of 256x256 fit in one response" in reason
    # the tests' everyday requests fit; a real SDXL on a CPU is slow but bounded, not refused outright
    assert handler_module.refusal("sd15", cpu, None, 16, params(256, 2, steps=1), timing_kind="tiny", **SHARED) is None
    assert handler_module.refusal("sdxl", cpu, None, 1, params(1024, steps=20), timeout_s=600, max_bytes=1_500_000) is None
    assert "on this CPU" in handler_module.refusal("sdxl", cpu, None, 1, params(1024, steps=20), **SHARED)


def test_choose_device(handler_module, caplog):
    choose = handler_module.choose_device
    devices = handler_module.DEVICES
    assert choose("", None) == (devices["cpu"], None)
    assert choose("t4", 14.75) == (devices["t4"], 14.7)
    assert choose(" L4 ", 21.96) == (devices["l4"], 21.96)
    # no preset: the card's memory decides (T4 ~14.7 GiB, L4 ~22 GiB)
    assert choose("", 14.75) == (devices["t4"], 14.7)
    assert choose("", 21.96) == (devices["l4"], 21.96)
    assert choose("", 79.2) == (devices["l4"], 22.0)  # a bigger card is budgeted like an L4
    # a preset never claims more memory than the card has (an inherited AVATAR_GPU on a small GPU)
    assert choose("l4", 11.7) == (devices["l4"], 11.7)
    with caplog.at_level(logging.WARNING, logger="avatar.handler"):
        assert choose("l4", None) == (devices["cpu"], None)
    assert "AVATAR_GPU=l4 but no CUDA device is visible: using the CPU limits" in caplog.text
    with pytest.raises(ValueError, match="AVATAR_GPU must be t4 or l4 .* got 'a100'"):
        choose("a100", 40.0)


def test_predict_timeout_env(handler_module, monkeypatch):
    monkeypatch.delenv("AVATAR_PREDICT_TIMEOUT_S", raising=False)
    assert handler_module.predict_timeout_s() == 60.0
    monkeypatch.setenv("AVATAR_PREDICT_TIMEOUT_S", "600")
    assert handler_module.predict_timeout_s() == 600.0
    for bad in ("soon", "0", "-1", "nan", "inf"):
        monkeypatch.setenv("AVATAR_PREDICT_TIMEOUT_S", bad)
        with pytest.raises(ValueError, match="AVATAR_PREDICT_TIMEOUT_S must be a positive number of seconds"):
            handler_module.predict_timeout_s()


class PipelineMustNotRun:
    def __call__(self, *args, **kwargs):
        raise AssertionError("the pipeline ran for a request that should have been refused up front")


def test_eight_instances_of_eight_images_are_refused_before_any_work(sd15_handler, monkeypatch):
    """Issue #13: 8 x 8 ran for more than nine minutes on the local server; now nothing runs."""
    monkeypatch.delenv("AVATAR_PREDICT_TIMEOUT_S", raising=False)
    monkeypatch.setattr(sd15_handler, "pipe", PipelineMustNotRun())
    with pytest.raises(ValueError) as info:
        sd15_handler({"instances": [{"prompt": f"{{avatar}} {i}"} for i in range(8)], "parameters": {"num_images": 8}})
    message = str(info.value)
    assert message.startswith("request refused before generating: 64 images of 256x256 at 30 steps")
    assert "over the endpoint's 60 s limit (AVATAR_PREDICT_TIMEOUT_S)" in message


def test_response_size_is_estimated_before_generating(sd15_handler, monkeypatch):
    monkeypatch.setenv("AVATAR_MAX_RESPONSE_BYTES", "100000")
    monkeypatch.setattr(sd15_handler, "pipe", PipelineMustNotRun())
    with pytest.raises(ValueError) as info:
        sd15_handler({"instances": ["{avatar}"] * 3, "parameters": {"steps": 1}})
    message = str(info.value)
    assert "the response would be about 0.1 MB for 3 images of 256x256 (jpeg), over the 100000-byte limit " \
        "(AVATAR_MAX_RESPONSE_BYTES)" in message
    assert "at most 2 images of 256x256 fit in one response: split the request" in message
