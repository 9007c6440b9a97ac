"""handler.py on the tiny SD 1.x and SDXL pipelines with a random (non-trivial) peft LoRA.

Every generation uses the smallest allowed size (256 px) and 1-2 steps, mostly without
classifier-free guidance (guidance 0), to keep the suite quick on 2 CPU cores.
"""

from __future__ import annotations

import base64
import io
import json
import os
import shutil
import subprocess
import sys
import time

import numpy as np
import pytest
from PIL import Image
from serving_support import HANDLER_PY, IMAGE_SECONDS, TRAINER_DIR

FAST = {"steps": 1, "guidance": 0}


def call(handler, kind, body):
    started = time.perf_counter()
    result = handler(body)
    params = body.get("parameters") or {}
    if params.get("steps") == 1 and params.get("guidance") == 0:  # comparable calls only
        IMAGE_SECONDS.append((kind, (time.perf_counter() - started) / len(result["predictions"])))
    return result


def decode(prediction) -> Image.Image:
    image = Image.open(io.BytesIO(base64.b64decode(prediction["image_b64"], validate=True)))
    image.load()
    return image


def pixels(prediction) -> np.ndarray:
    return np.asarray(decode(prediction).convert("RGB")).astype(np.int16)


def test_valid_request_gives_a_jpeg_of_the_requested_size(kind_handler):
    kind, handler, _ = kind_handler
    body = {"instances": [{"prompt": "a photo of {avatar}", "negative_prompt": "blurry"}],
            "parameters": dict(FAST, seed=7, width=264.0, height=256)}
    result = call(handler, kind, body)
    assert list(result) == ["predictions"]
    [prediction] = result["predictions"]
    assert set(prediction) == {"image_b64", "mime_type", "seed", "prompt", "width", "height", "nsfw"}
    assert prediction["nsfw"] is False  # the tiny bases have no safety checker
    assert prediction["mime_type"] == "image/jpeg"
    assert prediction["seed"] == 7
    assert prediction["prompt"] == "a photo of sks person"
    assert (prediction["width"], prediction["height"]) == (264, 256)
    assert base64.b64decode(prediction["image_b64"]).startswith(b"\xff\xd8\xff")
    image = decode(prediction)
    assert image.format == "JPEG" and image.mode == "RGB" and image.size == (264, 256)
    assert np.asarray(image).std() > 5  # a generated picture, not a blank frame
    json.dumps(result)  # JSON-native all the way down


def test_same_seed_same_image_other_seed_differs_png(kind_handler):
    kind, handler, _ = kind_handler
    body = {"instances": ["portrait of {avatar}"], "parameters": dict(FAST, format="png")}
    first = call(handler, kind, body)["predictions"][0]  # no seed: a random one, returned
    seed = first["seed"]
    assert isinstance(seed, int) and 0 <= seed < 2**32
    again = call(handler, kind, dict(body, parameters=dict(FAST, format="png", seed=seed)))["predictions"][0]
    other = call(handler, kind, dict(body, parameters=dict(FAST, format="png", seed=(seed + 1) % 2**32)))
    other = other["predictions"][0]
    assert first["mime_type"] == "image/png"
    assert decode(first).format == "PNG" and decode(first).size == (256, 256)  # avatar.json resolution 64 → 256
    assert again["seed"] == seed and again["image_b64"] == first["image_b64"]
    assert other["image_b64"] != first["image_b64"]
    assert np.abs(pixels(first) - pixels(other)).mean() > 2


def test_lora_scale_zero_equals_the_base_model(kind_handler):
    kind, handler, model_dir = kind_handler
    import torch
    from diffusers import StableDiffusionPipeline, StableDiffusionXLPipeline

    # 2 steps: with 1 step the (leading-spaced) schedule samples only t=1, where the UNet barely acts
    params = dict(steps=2, guidance=0, seed=21, format="png", width=256, height=256)
    body = {"instances": ["a photo of {avatar}"], "parameters": dict(params, lora_scale=0)}
    without = pixels(call(handler, kind, body)["predictions"][0])
    full = pixels(call(handler, kind, dict(body, parameters=dict(params, lora_scale=1.0)))["predictions"][0])
    half = pixels(call(handler, kind, dict(body, parameters=dict(params, lora_scale=0.5)))["predictions"][0])

    base_dir = json.loads((model_dir / "avatar.json").read_text())["base_model"]
    pipeline_class = StableDiffusionXLPipeline if kind == "sdxl" else StableDiffusionPipeline
    base = pipeline_class.from_pretrained(base_dir)
    base.set_progress_bar_config(disable=True)
    image = base(prompt="a photo of sks person", num_inference_steps=2, guidance_scale=0, width=256, height=256,
                 generator=[torch.Generator("cpu").manual_seed(21)]).images[0]
    reference = np.asarray(image).astype(np.int16)

    # equal up to float noise (CPU kernels may round differently for differently placed tensors)
    zero_diff = np.abs(without - reference).mean()
    assert np.abs(without - reference).max() <= 2
    assert zero_diff < 0.05
    # ...while the LoRA itself clearly changes the picture (same handler, same request), and
    # the scale is applied per request: half the scale lands in between
    full_diff = np.abs(full - reference).mean()
    half_diff = np.abs(half - reference).mean()
    assert full_diff > 0.5 and full_diff > 20 * zero_diff
    assert zero_diff < half_diff < full_diff


def test_instances_times_num_images_with_consecutive_seeds(kind_handler):
    """Also the classifier-free-guidance path (guidance > 1 uses the negative prompt)."""
    kind, handler, _ = kind_handler
    body = {
        "instances": [{"prompt": "{avatar} skiing", "negative_prompt": "text"}, "an oil painting of {avatar}"],
        "parameters": {"steps": 1, "guidance": 1.5, "num_images": 2, "seed": 2**32 - 1},
    }
    predictions = call(handler, kind, body)["predictions"]
    assert [(p["prompt"], p["seed"]) for p in predictions] == [
        ("sks person skiing", 2**32 - 1),
        ("sks person skiing", 0),  # wraps around: every returned seed can be asked for again
        ("an oil painting of sks person", 2**32 - 1),
        ("an oil painting of sks person", 0),
    ]
    images = [pixels(p) for p in predictions]
    assert all(image.shape == (256, 256, 3) for image in images)
    assert np.abs(images[0] - images[1]).mean() > 1  # different seeds
    assert np.abs(images[0] - images[2]).mean() > 0  # same seed, different prompt


def test_images_that_compress_worse_than_estimated_are_still_refused(sd15_handler, monkeypatch):
    """The size estimate (2 bytes per PNG pixel: photos) passes 200 kB for one 256 px PNG; the tiny
    model's noise takes ~2.5 bytes per pixel, so the exact check after generating refuses it."""
    monkeypatch.setenv("AVATAR_MAX_RESPONSE_BYTES", "200000")
    with pytest.raises(ValueError) as info:
        sd15_handler({"instances": ["{avatar}"], "parameters": dict(FAST, seed=1, format="png")})
    message = str(info.value)
    assert "bytes, over the 200000-byte limit (1 image)" in message
    assert "refused before generating" not in message
    assert "ask for fewer images per request" in message and "AVATAR_MAX_RESPONSE_BYTES" in message


def test_invalid_request_fails_before_generating(sd15_handler):
    started = time.perf_counter()
    with pytest.raises(ValueError, match="parameters.steps must be between 1 and 100"):
        sd15_handler({"instances": ["x"] * 8, "parameters": {"num_images": 8, "steps": 1000}})
    assert time.perf_counter() - started < 0.5


def test_device_and_dtype(kind_handler):
    import torch

    _, handler, _ = kind_handler
    if torch.cuda.is_available():  # pragma: no cover - no GPU in CI
        assert (handler.device, handler.dtype) == ("cuda", torch.float16)
    else:
        assert (handler.device, handler.dtype) == ("cpu", torch.float32)
        assert torch.get_num_threads() == 1  # tiny-kit base (avatar-tiny.json): one intra-op thread
    assert handler.pipe.unet.dtype == handler.dtype
    assert "avatar" in handler.pipe.get_list_adapters()["unet"]


def test_handler_serves_a_lora_written_by_the_trainer(handler_module, tiny_sd15_dir, dataset_zip, tmp_path):
    """The real trainer's output (avatar.json + LoRA) + handler.py is a servable model directory."""
    out, checkpoints = tmp_path / "model", tmp_path / "ck"
    env = dict(os.environ, PYTHONPATH=str(TRAINER_DIR))
    proc = subprocess.run(
        [sys.executable, "-m", "avatar_trainer", "--base", str(tiny_sd15_dir), "--dataset", str(dataset_zip),
         "--output-dir", str(out), "--checkpoint-dir", str(checkpoints), "--steps", "2", "--resolution", "64",
         "--rank", "4", "--name", "trained", "--run-id", "20260101-000002"],
        capture_output=True, text=True, env=env, timeout=600,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    meta = json.loads((out / "avatar.json").read_text())
    shutil.copy2(HANDLER_PY, out / "handler.py")
    handler = handler_module.EndpointHandler(str(out))
    assert handler.trigger == f"{meta['token']} {meta['class_word']}"
    [prediction] = handler({"instances": ["a photo of {avatar}"], "parameters": dict(FAST, seed=3)})["predictions"]
    assert prediction["prompt"] == f"a photo of {meta['token']} {meta['class_word']}"
    assert decode(prediction).size == (256, 256)
