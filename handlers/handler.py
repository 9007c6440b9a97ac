"""Custom handler for the Hugging Face PyTorch inference container on Vertex AI.

Shipped beside the LoRA weights (``pytorch_lora_weights.safetensors``) and ``avatar.json``; the
container imports this file and calls ``EndpointHandler(model_dir)`` once, then
``handler(body)`` with the whole JSON request body for every prediction.

Request::

    {"instances": [{"prompt": "a photo of {avatar} on a beach", "negative_prompt": "blurry"}],
     "parameters": {"num_images": 1, "steps": 30, "guidance": 7.0, "seed": 42,
                    "width": 1024, "height": 1024, "lora_scale": 1.0, "format": "jpeg"}}

Response::

    {"predictions": [{"image_b64": "...", "mime_type": "image/jpeg", "seed": 42,
                      "prompt": "a photo of sks person on a beach", "width": 1024, "height": 1024,
                      "nsfw": false}]}

An instance may carry its own ``"parameters"`` (same keys), merged over the request's: Vertex
batch prediction sends each JSONL line as one instance, grouped ``batchSize`` lines per request,
so a line's seed (and, should the job's ``modelParameters`` not reach the container as
``parameters``, everything else) travels in the line itself. One request still generates with
one set of parameters: instances may differ in ``seed`` only.

``nsfw`` is true when the base's safety checker (SD 1.5 has one, SDXL none) blacked the image out:
the policy is to keep the checker the base ships with, and to say so instead of staying silent.

Requests that would not fit the serving GPU's memory, the endpoint's time limit or its response
limit are refused before any work, with a 400 naming the limit and what fits (see "serving
limits" below: ``AVATAR_GPU``, ``AVATAR_PREDICT_TIMEOUT_S``, ``AVATAR_MAX_RESPONSE_BYTES``).

**Studio mode** (one GPU, many avatars): a model directory with ``studio.json`` instead of
``avatar.json`` serves every avatar of a manifest kept in the store (``studio.json`` names it: a
local path or ``gs://``). Requests name the avatar in ``parameters.avatar``; its LoRA is read from
its registered model directory when first asked for, kept in an LRU of adapters
(``AVATAR_STUDIO_MAX_ADAPTERS``, default 8) and activated per request with ``set_adapters``. The
manifest is re-read when its generation changes (one metadata read per request), so adding an
avatar changes the manifest, not the deployment. ``gs://`` is read with google-cloud-storage (in
the serving image); ``AVATAR_GCS_ENDPOINT`` points it at an emulator.

Self-contained on purpose (the same file runs in the container and in the local server): it
imports nothing from the avatar repository, and nothing heavy at import time.
"""

from __future__ import annotations

import base64
import hashlib
import io
import json
import logging
import math
import os
import secrets
import shutil
import tempfile
import threading
import time
from collections import OrderedDict
from pathlib import Path
from typing import Any, Callable, NamedTuple

LORA_WEIGHTS_FILE = "pytorch_lora_weights.safetensors"
AVATAR_JSON = "avatar.json"
SCHEMA = 1
PIPELINES = ("sd15", "sdxl")
AVATAR_PLACEHOLDER = "{avatar}"
MAX_RESPONSE_BYTES_ENV = "AVATAR_MAX_RESPONSE_BYTES"
DEFAULT_MAX_RESPONSE_BYTES = 1_500_000  # Vertex shared public endpoints: 1.5 MB per response
JPEG_QUALITY = 90
ADAPTER_NAME = "avatar"
STUDIO_JSON = "studio.json"
STUDIO_MAX_ADAPTERS_ENV = "AVATAR_STUDIO_MAX_ADAPTERS"
DEFAULT_STUDIO_MAX_ADAPTERS = 8
GCS_ENDPOINT_ENV = "AVATAR_GCS_ENDPOINT"  # tests and `avatar` fakes: the Cloud Storage emulator
TINY_MARKER = "avatar-tiny.json"  # written by the tiny-model kit into its pipeline directories

logger = logging.getLogger("avatar.handler")

MAX_INSTANCES = 8
MAX_PROMPT_CHARS = 1000
MIN_SIZE, MAX_SIZE, SIZE_MULTIPLE = 256, 1536, 8
MAX_SEED = 2**32 - 1

# name: (kind, minimum, maximum); defaults that depend on the model are filled in per handler.
INT_PARAMETERS = {
    "num_images": (1, 8),
    "steps": (1, 100),
    "width": (MIN_SIZE, MAX_SIZE),
    "height": (MIN_SIZE, MAX_SIZE),
    "seed": (0, MAX_SEED),
}
FLOAT_PARAMETERS = {
    "guidance": (0.0, 30.0),
    "lora_scale": (0.0, 2.0),
}
FORMATS = {"jpeg": "image/jpeg", "png": "image/png"}
PARAMETER_NAMES = tuple(INT_PARAMETERS) + tuple(FLOAT_PARAMETERS) + ("format",)
DEFAULTS = {"num_images": 1, "steps": 30, "guidance": 7.0, "lora_scale": 1.0, "format": "jpeg"}
INSTANCE_KEYS = ("prompt", "negative_prompt", "parameters")
# Names other APIs use for the same thing, for a helpful "did you mean" in the error.
PARAMETER_HINTS = {
    "num_inference_steps": "steps",
    "guidance_scale": "guidance",
    "num_images_per_prompt": "num_images",
    "n": "num_images",
    "scale": "lora_scale",
    "cross_attention_kwargs": "lora_scale",
    "output_format": "format",
}


# ---------------------------------------------------------------------------------------------
# avatar.json


def read_avatar_json(model_dir: str | os.PathLike) -> dict[str, Any]:
    """Read and validate ``avatar.json`` (schema 1); raise ValueError/FileNotFoundError clearly."""
    path = Path(model_dir) / AVATAR_JSON
    if not path.is_file():
        raise FileNotFoundError(
            f"{AVATAR_JSON} not found in {str(model_dir)!r}: the model directory must contain the "
            f"files the avatar trainer writes ({AVATAR_JSON}, {LORA_WEIGHTS_FILE})"
        )
    try:
        meta = json.loads(path.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ValueError(f"{path} is not valid JSON: {exc}") from None
    if not isinstance(meta, dict):
        raise ValueError(f"{path} must contain a JSON object")
    schema = meta.get("schema")
    if schema != SCHEMA or isinstance(schema, bool):
        raise ValueError(f"{path}: unsupported schema {schema!r} (this handler reads schema {SCHEMA})")
    pipeline = meta.get("pipeline")
    if pipeline not in PIPELINES:
        raise ValueError(f"{path}: unknown pipeline {pipeline!r} (expected one of {', '.join(PIPELINES)})")
    for key in ("base_model", "token", "class_word"):
        value = meta.get(key)
        if not isinstance(value, str) or not value.strip():
            raise ValueError(f"{path}: {key!r} must be a non-empty string, got {value!r}")
    resolution = meta.get("resolution")
    if isinstance(resolution, bool) or not isinstance(resolution, int) or resolution <= 0:
        raise ValueError(f"{path}: 'resolution' must be a positive integer, got {resolution!r}")
    revision = meta.get("base_revision")
    if revision is not None and (not isinstance(revision, str) or not revision.strip()):
        raise ValueError(f"{path}: 'base_revision' must be a Hub revision (commit hash) or null, got {revision!r}")
    return meta


def default_size(resolution: int) -> int:
    """avatar.json's training resolution clamped into the allowed range, a multiple of 8."""
    size = min(max(int(resolution), MIN_SIZE), MAX_SIZE)
    return size - size % SIZE_MULTIPLE


# ---------------------------------------------------------------------------------------------
# request validation (pure: no torch)


def _describe(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 60 else f"{text[:57]}..."


def _integer(value: Any, name: str, low: int, high: int) -> int:
    """An int in [low, high]; integral floats (protobuf Values are doubles: 30.0) are cast."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ValueError(f"{name} must be an integer between {low} and {high}, got {_describe(value)}")
    if isinstance(value, float):
        if not math.isfinite(value) or not value.is_integer():
            raise ValueError(f"{name} must be an integer between {low} and {high}, got {_describe(value)}")
        value = int(value)
    if not low <= value <= high:
        raise ValueError(f"{name} must be between {low} and {high}, got {_describe(value)}")
    return value


def _number(value: Any, name: str, low: float, high: float) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ValueError(f"{name} must be a number between {low:g} and {high:g}, got {_describe(value)}")
    value = float(value)
    if not math.isfinite(value) or not low <= value <= high:
        raise ValueError(f"{name} must be between {low:g} and {high:g}, got {_describe(value)}")
    return value


def _text(value: Any, name: str, *, required: bool) -> str:
    if not isinstance(value, str):
        raise ValueError(f"{name} must be a string of at most {MAX_PROMPT_CHARS} characters, got {_describe(value)}")
    if len(value) > MAX_PROMPT_CHARS:
        raise ValueError(f"{name} is too long: {len(value)} characters (at most {MAX_PROMPT_CHARS} allowed)")
    if required and not value.strip():
        raise ValueError(f"{name} must not be empty (1 to {MAX_PROMPT_CHARS} characters)")
    return value


def _unknown_key_error(key: Any, where: str, allowed: tuple[str, ...]) -> ValueError:
    hint = PARAMETER_HINTS.get(key) if isinstance(key, str) and where.endswith("parameters") else None
    extra = f" (did you mean {hint!r}?)" if hint else ""
    return ValueError(f"unknown key {key!r} in {where}{extra}; allowed: {', '.join(allowed)}")


def _parameter_values(parameters: Any, where: str) -> dict[str, Any]:
    """The validated values a ``parameters`` object gives (nulls and absent keys: not given)."""
    if parameters is None:
        return {}
    if not isinstance(parameters, dict):
        raise ValueError(f"{where} must be an object, got {type(parameters).__name__}")
    for key in parameters:
        if key not in PARAMETER_NAMES:
            raise _unknown_key_error(key, where, PARAMETER_NAMES)
    values: dict[str, Any] = {}
    for key, value in parameters.items():
        if value is None:  # explicit null = default
            continue
        name = f"{where}.{key}"
        if key in INT_PARAMETERS:
            values[key] = _integer(value, name, *INT_PARAMETERS[key])
        elif key in FLOAT_PARAMETERS:
            values[key] = _number(value, name, *FLOAT_PARAMETERS[key])
        elif key == "format":
            if value not in FORMATS:
                raise ValueError(f"{name} must be one of {', '.join(FORMATS)}, got {_describe(value)}")
            values[key] = value
    return values


def _without_seed(values: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in values.items() if k != "seed"}


def parse_request(data: Any, *, default_width: int, default_height: int, trigger: str) -> dict[str, Any]:
    """Validate a request body; return ``{"instances": [...], "parameters": {...}}`` normalised.

    Raises ValueError naming the field and the allowed range for anything wrong.
    ``trigger`` replaces ``{avatar}`` in prompts (e.g. "sks person"). An instance with its own
    ``parameters.seed`` comes back with a ``seed`` key; the others use ``parameters.seed``.
    """
    if not isinstance(data, dict):
        raise ValueError(f"the request body must be a JSON object, got {type(data).__name__}")
    for key in data:
        if key not in ("instances", "parameters"):
            raise _unknown_key_error(key, "the request body", ("instances", "parameters"))
    if "instances" not in data:
        raise ValueError('the request body needs "instances": a list of 1 to 8 {"prompt": ...} objects')

    instances = data["instances"]
    if not isinstance(instances, list):
        raise ValueError(f"instances must be a list of 1 to {MAX_INSTANCES} objects, got {type(instances).__name__}")
    if not 1 <= len(instances) <= MAX_INSTANCES:
        raise ValueError(
            f"instances must contain 1 to {MAX_INSTANCES} items, got {len(instances)}; "
            "split larger batches into several requests"
        )
    shared = _parameter_values(data.get("parameters"), "parameters")
    parsed_instances = []
    first: dict[str, Any] | None = None
    for index, instance in enumerate(instances):
        where = f"instances[{index}]"
        if isinstance(instance, str):  # shorthand: a bare prompt
            instance = {"prompt": instance}
        if not isinstance(instance, dict):
            raise ValueError(f'{where} must be an object like {{"prompt": "..."}}, got {_describe(instance)}')
        for key in instance:
            if key not in INSTANCE_KEYS:
                raise _unknown_key_error(key, where, INSTANCE_KEYS)
        if "prompt" not in instance:
            raise ValueError(f"{where}.prompt is required (1 to {MAX_PROMPT_CHARS} characters)")
        prompt = _text(instance["prompt"], f"{where}.prompt", required=True)
        negative = instance.get("negative_prompt")
        negative = "" if negative is None else _text(negative, f"{where}.negative_prompt", required=False)
        own = _parameter_values(instance.get("parameters"), f"{where}.parameters")
        # The pipeline runs once per request with one set of parameters (and one LoRA scale):
        # instances that need different ones belong in different requests.
        effective = _without_seed({**shared, **own})
        if first is None:
            first = effective
        elif effective != first:
            raise ValueError(
                f"{where}.parameters differ from instances[0]'s ({_describe(effective)} vs {_describe(first)}); "
                "instances of one request may differ in seed only: split the request"
            )
        parsed = {
            "prompt": prompt.replace(AVATAR_PLACEHOLDER, trigger),
            "negative_prompt": negative.replace(AVATAR_PLACEHOLDER, trigger) or None,
        }
        if "seed" in own:
            parsed["seed"] = own["seed"]
        parsed_instances.append(parsed)

    result: dict[str, Any] = dict(DEFAULTS, width=default_width, height=default_height, seed=None)
    result.update(shared)
    result.update(first or {})
    for key in ("width", "height"):
        if result[key] % SIZE_MULTIPLE:
            raise ValueError(
                f"parameters.{key} must be a multiple of {SIZE_MULTIPLE} between {MIN_SIZE} and {MAX_SIZE}, "
                f"got {result[key]}"
            )
    if result["seed"] is None:
        result["seed"] = secrets.randbelow(MAX_SEED + 1)
    return {"instances": parsed_instances, "parameters": result}


def max_response_bytes() -> int:
    raw = os.environ.get(MAX_RESPONSE_BYTES_ENV, "").strip()
    if not raw:
        return DEFAULT_MAX_RESPONSE_BYTES
    try:
        value = int(raw)
    except ValueError:
        raise ValueError(f"{MAX_RESPONSE_BYTES_ENV} must be a positive integer, got {raw!r}") from None
    if value <= 0:
        raise ValueError(f"{MAX_RESPONSE_BYTES_ENV} must be a positive integer, got {raw!r}")
    return value


# ---------------------------------------------------------------------------------------------
# serving limits (pure: no torch)
#
# One inference runs at a time, so a request that cannot finish holds up every request behind
# it. The handler therefore refuses, before generating, what would not fit: the GPU's memory,
# the endpoint's time limit, or its response limit. The numbers below are ESTIMATES (rounded
# from public diffusers/SDXL benchmarks and model sizes, not measured by us on these cards):
# they are meant to refuse what is clearly too big, not to predict a latency.

GPU_ENV = "AVATAR_GPU"  # the deploy's GPU preset: l4 | t4; absent: detected from torch
PREDICT_TIMEOUT_ENV = "AVATAR_PREDICT_TIMEOUT_S"
DEFAULT_PREDICT_TIMEOUT_S = 60.0  # Vertex shared public endpoints answer 503 after 60 s
CUDA_HEADROOM_GIB = 1.0  # CUDA context and allocator fragmentation, never available to tensors
# With VAE tiling (above 1024 x 1024) the decoder works on tiles of the VAE's sample size
# (1024 px for SDXL, 512 px for SD 1.5): its memory stops growing with the image.
TILING_ABOVE_PIXELS = 1024 * 1024
BASE64_GROWTH = 4 / 3
PREDICTION_OVERHEAD_BYTES = 300  # the JSON keys, prompt and numbers around each image
# Encoded bytes per pixel before base64, for photos: JPEG q90 0.25-0.45, PNG 1.5-2. Images that
# compress worse (the tiny test models' noise: JPEG 0.55-0.6, PNG 2.5, measured) are caught by
# the exact check after generating.
BYTES_PER_PIXEL = {"jpeg": 0.45, "png": 2.0}


# NamedTuples, not dataclasses: a dataclass needs its module in sys.modules, which a loader of
# handler.py (spec_from_file_location) need not do.
class ModelMemory(NamedTuple):
    """GiB on the GPU (fp16): weights, UNet activations per image-megapixel (the CFG pair
    included), VAE decode per megapixel (one image at a time: VAE slicing is always on)."""

    weights: float
    unet_per_image_mp: float
    decode_per_mp: float


MODEL_MEMORY = {
    # UNet 1.7 GB + text encoder 0.25 + VAE 0.16 + safety checker 0.6; decode in fp16.
    "sd15": ModelMemory(weights=2.6, unet_per_image_mp=1.5, decode_per_mp=1.6),
    # UNet 4.8 GiB + text encoders 1.5 + VAE 0.16; the stock SDXL VAE upcasts to fp32 to decode:
    # about 3 GB of activations per 1024 x 1024 image (issue #13).
    "sdxl": ModelMemory(weights=6.6, unet_per_image_mp=1.25, decode_per_mp=3.0),
}


class Device(NamedTuple):
    """What a device can do, per pipeline kind: seconds per denoising step per image-megapixel
    (with classifier-free guidance, the default; without it about half), seconds per VAE decode
    per megapixel, and the memory tensors may use (None: not budgeted)."""

    name: str
    label: str
    memory_gib: float | None
    step_seconds: dict[str, float]
    decode_seconds: dict[str, float]


DEVICES = {
    # T4, 16 GB (torch sees ~14.7 GiB), fp16 only: ~7 it/s for SD 1.5 at 512 px, ~1.4 s per
    # step for SDXL at 1024 px.
    "t4": Device("t4", "an NVIDIA T4", 14.7, {"sd15": 0.5, "sdxl": 1.4}, {"sd15": 0.6, "sdxl": 2.0}),
    # L4, 24 GB (~22 GiB): roughly 2.5-3x a T4.
    "l4": Device("l4", "an NVIDIA L4", 22.0, {"sd15": 0.2, "sdxl": 0.45}, {"sd15": 0.3, "sdxl": 0.8}),
    # CPU (fp32): generous but bounded, a fast many-core machine; "tiny" is the random test/demo
    # model (measured ~1-2 s per step-megapixel on 2 cores; counted at 1). Host RAM is not
    # budgeted: on a CPU the time limit is the one that binds.
    "cpu": Device("cpu", "this CPU", None, {"sd15": 3.0, "sdxl": 8.0, "tiny": 1.0},
                  {"sd15": 2.0, "sdxl": 4.0, "tiny": 0.2}),
}


def predict_timeout_s() -> float:
    raw = os.environ.get(PREDICT_TIMEOUT_ENV, "").strip()
    if not raw:
        return DEFAULT_PREDICT_TIMEOUT_S
    try:
        value = float(raw)
    except ValueError:
        value = -1.0
    if not math.isfinite(value) or value <= 0:
        raise ValueError(f"{PREDICT_TIMEOUT_ENV} must be a positive number of seconds, got {raw!r}")
    return value


def choose_device(preset: str, cuda_gib: float | None) -> tuple[Device, float | None]:
    """The limits row and the memory budget for this server.

    ``preset`` is AVATAR_GPU (may be empty); ``cuda_gib`` the total memory torch reports for
    GPU 0, None without CUDA. A preset never claims more memory than the card has (a local GPU
    under an inherited AVATAR_GPU); without CUDA the CPU row applies whatever the preset says.
    Without a preset, the card's memory picks the row: 20 GiB and more counts as an L4.
    """
    preset = preset.strip().lower()
    if preset and preset not in ("t4", "l4"):
        raise ValueError(f"{GPU_ENV} must be t4 or l4 (or unset to detect the GPU), got {preset!r}")
    if cuda_gib is None:
        if preset:
            logger.warning("%s=%s but no CUDA device is visible: using the CPU limits", GPU_ENV, preset)
        return DEVICES["cpu"], None
    device = DEVICES[preset] if preset else DEVICES["l4" if cuda_gib >= 20 else "t4"]
    return device, min(device.memory_gib, cuda_gib)


def _plural(n: int, word: str) -> str:
    return f"{n} {word}{'' if n == 1 else 's'}"


def _memory_refusal(kind: str, device: Device, memory_gib: float, per_call: int, width: int, height: int) -> str | None:
    """One pipeline call holds ``per_call`` images (num_images) in the UNet; the VAE decodes one."""
    model = MODEL_MEMORY[kind]
    megapixels = width * height / 1e6
    fixed = CUDA_HEADROOM_GIB + model.weights + model.decode_per_mp * min(megapixels, TILING_ABOVE_PIXELS / 1e6)
    per_image = model.unet_per_image_mp * megapixels
    if fixed + per_call * per_image <= memory_gib:
        return None
    fits = max(0, math.floor((memory_gib - fixed) / per_image))
    advice = (f"at most {fits} per prompt fit (parameters.num_images <= {fits})" if fits
              else "not even one fits: ask for a smaller width/height")
    return (f"{_plural(per_call, 'image')} of {width}x{height} per prompt need about "
            f"{fixed + per_call * per_image:.1f} GiB on {device.label} ({memory_gib:.1f} GiB); {advice}")


def _time_refusal(rates: str, device: Device, images: int, params: dict[str, Any], timeout_s: float) -> str | None:
    """The request's images are generated one call after another: their times add up."""
    width, height, steps = params["width"], params["height"], params["steps"]
    megapixels = width * height / 1e6
    guidance = 1.0 if params["guidance"] > 1 else 0.5  # no CFG at 1 or below: half the UNet batch
    step = device.step_seconds[rates] * megapixels * guidance
    decode = device.decode_seconds[rates] * megapixels
    per_image = steps * step + decode
    if images * per_image <= timeout_s:
        return None
    fits = math.floor(timeout_s / per_image)
    if fits:
        advice = f"at most {_plural(fits, 'image')} of that size and steps fit in one request: split it"
    else:
        most_steps = math.floor((timeout_s - decode) / step)
        advice = (f"even one image needs about {per_image:.0f} s: ask for at most {most_steps} steps at {width}x{height}"
                  if most_steps >= 1 else "ask for a smaller width/height")
    return (f"{_plural(images, 'image')} of {width}x{height} at {steps} steps would take about "
            f"{images * per_image:.0f} s on {device.label}, over the endpoint's {timeout_s:g} s limit "
            f"({PREDICT_TIMEOUT_ENV}); {advice}")


def _size_refusal(images: int, params: dict[str, Any], max_bytes: int) -> str | None:
    width, height, fmt = params["width"], params["height"], params["format"]
    image_bytes = width * height * BYTES_PER_PIXEL[fmt] * BASE64_GROWTH + PREDICTION_OVERHEAD_BYTES
    if images * image_bytes <= max_bytes:
        return None
    fits = math.floor(max_bytes / image_bytes)
    smaller = "ask for a smaller width/height" + (" or format jpeg" if fmt == "png" else "")
    advice = f"at most {_plural(fits, 'image')} of {width}x{height} fit in one response: split the request" if fits else smaller
    where = " of a shared Vertex endpoint" if max_bytes == DEFAULT_MAX_RESPONSE_BYTES else ""
    return (f"the response would be about {images * image_bytes / 1e6:.1f} MB for {_plural(images, 'image')} "
            f"of {width}x{height} ({fmt}), over the {max_bytes}-byte limit{where} ({MAX_RESPONSE_BYTES_ENV}); {advice}")


def refusal(kind: str, device: Device, memory_gib: float | None, images: int, params: dict[str, Any], *,
            timeout_s: float, max_bytes: int, timing_kind: str | None = None) -> str | None:
    """Why this request would not fit (memory, time, response size), with what fits; None if it fits.

    ``images`` is the request's total (instances x num_images). ``timing_kind`` picks the timing
    row when the device has one for it (the tiny model on a CPU).
    """
    rates = timing_kind if timing_kind in device.step_seconds else kind
    memory = None if memory_gib is None else _memory_refusal(
        kind, device, memory_gib, params["num_images"], params["width"], params["height"]
    )
    return memory or _time_refusal(rates, device, images, params, timeout_s) or _size_refusal(images, params, max_bytes)


def encode_image(image: Any, fmt: str) -> str:
    buffer = io.BytesIO()
    if fmt == "jpeg":
        image.convert("RGB").save(buffer, format="JPEG", quality=JPEG_QUALITY)
    else:
        image.save(buffer, format="PNG")
    return base64.b64encode(buffer.getvalue()).decode("ascii")


def is_tiny_model(base_model: str) -> bool:
    """True for a local base directory built by the avatar tiny-model kit (`avatar-tiny.json`
    with `"avatar_tiny": true`); never for Hub ids."""
    marker = Path(base_model) / TINY_MARKER
    if not base_model.startswith("/") or not marker.is_file():
        return False
    try:
        return json.loads(marker.read_text(encoding="utf-8")).get("avatar_tiny") is True
    except (OSError, ValueError, AttributeError):
        return False


def load_base_pipeline(pipeline_class: Any, base_model: str, dtype: Any, *, fp16_variant: bool,
                       revision: str | None = None) -> Any:
    """from_pretrained with a clear error, at the Hub revision the LoRA was trained on (None: the
    current one). On CUDA the fp16 weight files are tried first (half the download for Hub models
    that ship them), then the default ones."""
    errors = []
    for variant in (["fp16", None] if fp16_variant else [None]):
        try:
            return pipeline_class.from_pretrained(base_model, torch_dtype=dtype, variant=variant, revision=revision)
        except Exception as exc:  # noqa: BLE001 - reported below with the model name
            errors.append(exc)
    at = f" at revision {revision}" if revision else ""
    raise RuntimeError(
        f"could not load the base pipeline {base_model!r}{at} named in avatar.json "
        f"({pipeline_class.__name__}): {errors[-1]}"
    ) from errors[-1]


def base_revision(meta: dict[str, Any], base_model: str) -> str | None:
    """avatar.json's base_revision; warns (serving log) when a Hub base has none: older models
    load the Hub's current files, which may not be the ones the LoRA was trained on."""
    revision = meta.get("base_revision")
    if revision is None and not Path(base_model).is_absolute():
        logger.warning(
            "avatar.json records no base_revision: loading the current Hub revision of %s, which may "
            "differ from the one this LoRA was trained on (models trained by newer avatar versions pin it)",
            base_model,
        )
    return revision


class RequestCancelled(RuntimeError):
    """The client went away (timeout, Ctrl-C): generation stopped at a step boundary."""


def nsfw_flags(output: Any, count: int) -> list[bool]:
    """The safety checker's verdict per image; all False for pipelines without a checker (SDXL,
    the tiny models): diffusers then reports None."""
    flags = getattr(output, "nsfw_content_detected", None)
    return [bool(flag) for flag in flags] if flags is not None else [False] * count


# ---------------------------------------------------------------------------------------------
# studio mode: studio.json, the manifest in the store, and reading LoRAs from the store


def _json_object(raw: bytes | str, where: str) -> dict[str, Any]:
    try:
        value = json.loads(raw)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ValueError(f"{where} is not valid JSON: {exc}") from None
    if not isinstance(value, dict):
        raise ValueError(f"{where} must contain a JSON object")
    return value


def _check_base(data: dict[str, Any], where: str) -> None:
    if data.get("schema") != SCHEMA or isinstance(data.get("schema"), bool):
        raise ValueError(f"{where}: unsupported schema {data.get('schema')!r} (this handler reads schema {SCHEMA})")
    if data.get("pipeline") not in PIPELINES:
        raise ValueError(f"{where}: unknown pipeline {data.get('pipeline')!r} (expected one of {', '.join(PIPELINES)})")
    for key in ("studio", "base_model"):
        if not isinstance(data.get(key), str) or not data[key].strip():
            raise ValueError(f"{where}: {key!r} must be a non-empty string, got {data.get(key)!r}")


def read_studio_json(model_dir: str | os.PathLike) -> dict[str, Any] | None:
    """``studio.json`` of a studio model directory (None: a single-avatar model)."""
    path = Path(model_dir) / STUDIO_JSON
    if not path.is_file():
        return None
    data = _json_object(path.read_bytes(), str(path))
    _check_base(data, str(path))
    if not isinstance(data.get("manifest"), str) or not data["manifest"].strip():
        raise ValueError(f"{path}: 'manifest' must name the studio manifest (a path or gs:// URI)")
    return data


def parse_manifest(raw: bytes, where: str, studio: dict[str, Any]) -> dict[str, dict[str, str]]:
    """The avatars of a studio manifest: name -> {"model_uri", "run_id", "version"}. The manifest
    must be the studio's own (same name, pipeline and base): the base is loaded once."""
    data = _json_object(raw, where)
    _check_base(data, where)
    for key in ("studio", "pipeline", "base_model"):
        if data[key] != studio[key]:
            raise ValueError(f"{where}: {key} {data[key]!r} is not this studio's ({studio[key]!r})")
    avatars = data.get("avatars")
    if not isinstance(avatars, dict):
        raise ValueError(f"{where}: 'avatars' must be an object of avatar name -> registered model")
    result: dict[str, dict[str, str]] = {}
    for name, entry in avatars.items():
        if not isinstance(entry, dict) or not isinstance(entry.get("model_uri"), str):
            raise ValueError(f"{where}: avatars[{name!r}] needs a 'model_uri'")
        result[name] = {"model_uri": entry["model_uri"], "run_id": str(entry.get("run_id", "")),
                        "version": str(entry.get("version", ""))}
    return result


class ObjectReader:
    """Reads the manifest and the avatars' model files: local paths / file:// URIs, or gs:// with
    google-cloud-storage (imported on first use; the serving image ships it). On Vertex the client
    authenticates as the deployed model's service account; AVATAR_GCS_ENDPOINT (tests, fakes)
    points it at an emulator, anonymously."""

    def __init__(self) -> None:
        self._client: Any = None

    def _gcs(self) -> Any:
        if self._client is None:
            from google.cloud import storage

            endpoint = os.environ.get(GCS_ENDPOINT_ENV, "").strip()
            if endpoint:
                from google.auth.credentials import AnonymousCredentials

                self._client = storage.Client(project=os.environ.get("AIP_PROJECT_NUMBER") or "emulated",
                                              credentials=AnonymousCredentials(),
                                              client_options={"api_endpoint": endpoint})
            else:
                self._client = storage.Client()
        return self._client

    @staticmethod
    def _local(uri: str) -> Path:
        if uri.startswith("file://"):
            from urllib.parse import unquote, urlsplit

            return Path(unquote(urlsplit(uri).path))
        return Path(uri)

    def _blob(self, uri: str) -> Any:
        bucket, _, name = uri[len("gs://"):].partition("/")
        return self._gcs().bucket(bucket).get_blob(name)

    def generation(self, uri: str) -> str | None:
        """A token that changes whenever the object does (GCS generation; mtime+size); None: absent."""
        if uri.startswith("gs://"):
            blob = self._blob(uri)
            return None if blob is None else str(blob.generation)
        try:
            stat = self._local(uri).stat()
        except FileNotFoundError:
            return None
        return f"{stat.st_mtime_ns}-{stat.st_size}"

    def read(self, uri: str) -> bytes:
        if uri.startswith("gs://"):
            blob = self._blob(uri)
            if blob is None:
                raise FileNotFoundError(f"{uri} does not exist")
            return blob.download_as_bytes()
        return self._local(uri).read_bytes()

    def fetch(self, uri: str, dest: Path) -> None:
        """Copies ``uri`` to ``dest`` whole or not at all: the studio's cache trusts any file it
        finds, so an interrupted download must not leave a truncated one behind."""
        partial = dest.with_name(dest.name + ".partial")
        try:
            if uri.startswith("gs://"):
                blob = self._blob(uri)
                if blob is None:
                    raise FileNotFoundError(f"{uri} does not exist")
                blob.download_to_filename(str(partial))
            else:
                shutil.copyfile(self._local(uri), partial)
            os.replace(partial, dest)
        finally:
            partial.unlink(missing_ok=True)


class StudioAvatar(NamedTuple):
    name: str
    adapter: str  # the peft adapter name
    key: str  # model_uri + run: a new version of the avatar is another adapter
    trigger: str
    default_size: int


def adapter_name(avatar: str) -> str:
    return "avatar_" + avatar.replace("-", "_")


def studio_max_adapters() -> int:
    raw = os.environ.get(STUDIO_MAX_ADAPTERS_ENV, "").strip()
    if not raw:
        return DEFAULT_STUDIO_MAX_ADAPTERS
    if not raw.isdigit() or int(raw) < 1:
        raise ValueError(f"{STUDIO_MAX_ADAPTERS_ENV} must be a positive integer, got {raw!r}")
    return int(raw)


def take_avatar(data: Any) -> tuple[Any, str | None]:
    """Splits ``parameters.avatar`` off the request (the rest goes to parse_request)."""
    if not isinstance(data, dict) or not isinstance(data.get("parameters"), dict) or "avatar" not in data["parameters"]:
        return data, None
    parameters = dict(data["parameters"])
    avatar = parameters.pop("avatar")
    if avatar is not None and (not isinstance(avatar, str) or not avatar.strip()):
        raise ValueError(f"parameters.avatar must be an avatar name, got {_describe(avatar)}")
    return {**data, "parameters": parameters}, avatar


# ---------------------------------------------------------------------------------------------
# the handler


class EndpointHandler:
    """Loads the base pipeline named by avatar.json plus the avatar's LoRA, once; or, for a
    studio (studio.json), the studio's base once and each avatar's LoRA when first asked for."""

    # Set by a server that can tell when a client has gone away (handlers/local_server.py sets it
    # around each call): checked at every denoising step. The HF toolkit only calls handler(data)
    # and never sets it, so there requests always run to the end.
    is_cancelled: Callable[[], bool] | None = None

    def __init__(self, path: str = ""):
        started = time.perf_counter()
        self.model_dir = Path(path or ".").resolve()
        self.studio = read_studio_json(self.model_dir)
        # One request at a time (the servers call one at a time too); re-entrant for studio mode.
        self._lock = threading.RLock()
        if self.studio:
            self.meta = None
            base = self.studio
            self.trigger, self.default_size = "", default_size(1024 if base["pipeline"] == "sdxl" else 512)
        else:
            self.meta = base = read_avatar_json(self.model_dir)
            lora_path = self.model_dir / LORA_WEIGHTS_FILE
            if not lora_path.is_file():
                raise FileNotFoundError(f"{LORA_WEIGHTS_FILE} not found in {str(self.model_dir)!r}")
            self.trigger = f"{self.meta['token']} {self.meta['class_word']}"
            self.default_size = default_size(self.meta["resolution"])
        self.kind = base["pipeline"]
        self.base_model = base["base_model"]
        if self.base_model.startswith("/") and not Path(self.base_model).is_dir():
            raise FileNotFoundError(
                f"base model directory {self.base_model!r} ({STUDIO_JSON if self.studio else AVATAR_JSON} base_model) does not exist"
            )
        self.base_revision = base_revision(base, self.base_model)

        import torch
        from diffusers import StableDiffusionPipeline, StableDiffusionXLPipeline

        self._torch = torch
        tiny = is_tiny_model(self.base_model)
        if torch.cuda.is_available():
            self.device, self.dtype = "cuda", torch.float16
            cuda_gib = torch.cuda.get_device_properties(0).total_memory / 2**30
        else:
            self.device, self.dtype, cuda_gib = "cpu", torch.float32, None
            if tiny and not os.environ.get("OMP_NUM_THREADS"):
                # The tiny random models of the local demo/tests are too small for intra-op
                # parallelism: one thread is faster, and 10-30x faster on a busy machine where
                # OpenMP threads spin against each other. Real models keep torch's default.
                torch.set_num_threads(1)
        self.limits_device, self.memory_gib = choose_device(os.environ.get(GPU_ENV, ""), cuda_gib)
        self.timing_kind = "tiny" if tiny else self.kind
        pipeline_class = StableDiffusionXLPipeline if self.kind == "sdxl" else StableDiffusionPipeline
        pipe = load_base_pipeline(pipeline_class, self.base_model, self.dtype, fp16_variant=self.device == "cuda",
                                  revision=self.base_revision)
        if not self.studio:
            self._load_lora(pipe, self.model_dir, ADAPTER_NAME, self.model_dir / LORA_WEIGHTS_FILE)
        pipe.to(self.device)
        pipe.set_progress_bar_config(disable=True)
        # Decode one image at a time: the SDXL VAE upcasts to fp32, ~3 GB per 1024 px image.
        pipe.vae.enable_slicing()
        self.pipe = pipe
        if self.studio:
            self._reader = ObjectReader()
            self._manifest_uri = self.studio["manifest"]
            self._manifest_generation: str | None = None
            self._avatars: dict[str, dict[str, str]] = {}
            self._adapters: OrderedDict[str, StudioAvatar] = OrderedDict()
            self._max_adapters = studio_max_adapters()
            self._cache_dir = Path(tempfile.mkdtemp(prefix="avatar-studio-"))
            self._refresh_manifest()
        self.load_seconds = time.perf_counter() - started
        logger.info(
            "serving %s on %s (%s limits%s)%s", self.kind, self.device, self.limits_device.name,
            f", {self.memory_gib:.1f} GiB" if self.memory_gib is not None else "",
            f" as studio {self.studio['studio']} ({_plural(len(self._avatars), 'avatar')})" if self.studio else "",
        )

    def _load_lora(self, pipe: Any, directory: Path, adapter: str, lora_path: Path) -> None:
        try:
            pipe.load_lora_weights(str(directory), weight_name=LORA_WEIGHTS_FILE, adapter_name=adapter)
        except Exception as exc:
            raise RuntimeError(
                f"could not load the LoRA weights {str(lora_path)!r} into the {self.kind} base "
                f"{self.base_model!r}: {exc}"
            ) from exc

    # -- studio mode ------------------------------------------------------------------------

    def served_avatars(self) -> list[str]:
        return sorted(self._avatars) if self.studio else [str((self.meta or {}).get("name", ""))]

    def _refresh_manifest(self) -> None:
        """Re-reads the manifest when its generation changed (one metadata read otherwise);
        drops the adapters of avatars removed from it or registered anew."""
        generation = self._reader.generation(self._manifest_uri)
        if generation is None:
            raise FileNotFoundError(f"the studio manifest {self._manifest_uri} does not exist (was the studio removed?)")
        if generation == self._manifest_generation:
            return
        avatars = parse_manifest(self._reader.read(self._manifest_uri), self._manifest_uri, self.studio)
        self._avatars, self._manifest_generation = avatars, generation
        for name in list(self._adapters):
            entry = avatars.get(name)
            if entry is None or self._adapters[name].key != f"{entry['model_uri']}#{entry['run_id']}":
                self._evict(name)
        logger.info("studio manifest generation %s: %s", generation, ", ".join(sorted(avatars)) or "no avatars")

    def _evict(self, name: str) -> None:
        entry = self._adapters.pop(name)
        self.pipe.delete_adapters([entry.adapter])
        logger.info("studio: unloaded %s", name)

    def _studio_avatar(self, name: str | None) -> StudioAvatar:
        self._refresh_manifest()
        served = ", ".join(sorted(self._avatars)) or "no avatars yet"
        if name is None:
            raise ValueError(f"parameters.avatar is required: studio {self.studio['studio']} serves {served}")
        entry = self._avatars.get(name)
        if entry is None:
            raise ValueError(f"unknown avatar {name!r}: studio {self.studio['studio']} serves {served}")
        loaded = self._adapters.get(name)
        if loaded:
            self._adapters.move_to_end(name)
            return loaded
        while len(self._adapters) >= self._max_adapters:
            self._evict(next(iter(self._adapters)))
        started = time.perf_counter()
        model_uri = entry["model_uri"].rstrip("/")
        # Keyed by the model folder, not the run: a run registers a version per chosen checkpoint
        # (runs/<run>/model, model-step-NNNNNN), and another checkpoint must not hit this cache.
        local = self._cache_dir / f"{name}-{hashlib.sha256(model_uri.encode()).hexdigest()[:16]}"
        local.mkdir(parents=True, exist_ok=True)
        for file in (AVATAR_JSON, LORA_WEIGHTS_FILE):
            if not (local / file).is_file():
                self._reader.fetch(f"{model_uri}/{file}", local / file)
        meta = read_avatar_json(local)
        for key in ("pipeline", "base_model"):
            if meta[key] != self.studio[key]:
                raise ValueError(
                    f"avatar {name!r} was trained on {key} {meta[key]!r}, but studio {self.studio['studio']} "
                    f"serves {self.studio[key]!r}: all avatars of a studio share one base"
                )
        adapter = adapter_name(name)
        self._load_lora(self.pipe, local, adapter, local / LORA_WEIGHTS_FILE)
        avatar = StudioAvatar(name, adapter, f"{entry['model_uri']}#{entry['run_id']}",
                              f"{meta['token']} {meta['class_word']}", default_size(meta["resolution"]))
        self._adapters[name] = avatar
        logger.info("studio: loaded %s (run %s) in %.2f s", name, entry["run_id"], time.perf_counter() - started)
        return avatar

    # -- requests ---------------------------------------------------------------------------

    def check_limits(self, images: int, params: dict[str, Any]) -> None:
        """Refuse (ValueError: a 400) what would not fit, before any work."""
        reason = refusal(
            self.kind, self.limits_device, self.memory_gib, images, params,
            timeout_s=predict_timeout_s(), max_bytes=max_response_bytes(), timing_kind=self.timing_kind,
        )
        if reason:
            raise ValueError(f"request refused before generating: {reason}")

    def _prepare(self, params: dict[str, Any], adapter: str = ADAPTER_NAME) -> None:
        """Per-request pipeline state, always set absolutely: nothing a failed or cancelled request
        left behind carries over. (diffusers' cross_attention_kwargs={"scale": s} multiplies the
        LoRA scaling in place and undoes it only when the UNet forward returns.) In a studio only
        the request's avatar is active: set_adapters disables every adapter not named."""
        self.pipe.set_adapters([adapter], adapter_weights=[params["lora_scale"]])
        if params["width"] * params["height"] > TILING_ABOVE_PIXELS:
            self.pipe.vae.enable_tiling()
        else:
            self.pipe.vae.disable_tiling()

    def _cancelled(self) -> bool:
        check = self.is_cancelled
        return bool(check and check())

    def _on_step_end(self, pipe: Any, step: int, timestep: Any, callback_kwargs: dict) -> dict:
        if self._cancelled():
            raise RequestCancelled(
                f"the client went away: generation stopped after step {step + 1} of {pipe.num_timesteps}"
            )
        return callback_kwargs

    def __call__(self, data: Any) -> dict[str, Any]:
        data, avatar = take_avatar(data)
        if not self.studio:
            own = (self.meta or {}).get("name")
            if avatar is not None and avatar != own:
                raise ValueError(f"unknown avatar {avatar!r}: this endpoint serves {own!r} only")
            return self._generate(data, ADAPTER_NAME, self.trigger, self.default_size)
        with self._lock:
            target = self._studio_avatar(avatar)
            return self._generate(data, target.adapter, target.trigger, target.default_size)

    def _generate(self, data: Any, adapter: str, trigger: str, size: int) -> dict[str, Any]:
        request = parse_request(data, default_width=size, default_height=size, trigger=trigger)
        params = request["parameters"]
        self.check_limits(len(request["instances"]) * params["num_images"], params)
        limit = max_response_bytes()
        torch = self._torch
        predictions = []
        with self._lock, torch.inference_mode():
            self._prepare(params, adapter)
            for instance in request["instances"]:
                if self._cancelled():
                    raise RequestCancelled("the client went away: generation stopped between prompts")
                first_seed = instance.get("seed", params["seed"])
                seeds = [(first_seed + k) % (MAX_SEED + 1) for k in range(params["num_images"])]
                # CPU generators: the same seed gives the same starting noise on any device.
                generators = [torch.Generator("cpu").manual_seed(seed) for seed in seeds]
                output = self.pipe(
                    prompt=instance["prompt"],
                    negative_prompt=instance["negative_prompt"],
                    num_inference_steps=params["steps"],
                    guidance_scale=params["guidance"],
                    width=params["width"],
                    height=params["height"],
                    num_images_per_prompt=params["num_images"],
                    generator=generators,
                    callback_on_step_end=self._on_step_end,
                    output_type="pil",
                )
                for seed, image, nsfw in zip(seeds, output.images, nsfw_flags(output, len(seeds))):
                    predictions.append(
                        {
                            "image_b64": encode_image(image, params["format"]),
                            "mime_type": FORMATS[params["format"]],
                            "seed": seed,
                            "prompt": instance["prompt"],
                            "width": image.width,
                            "height": image.height,
                            "nsfw": nsfw,
                        }
                    )
        response = {"predictions": predictions}
        # The estimate refused the clear cases up front; this catches images that compress worse
        # than estimated.
        size = len(json.dumps(response))
        if size > limit:
            where = " of a shared Vertex endpoint" if limit == DEFAULT_MAX_RESPONSE_BYTES else ""
            raise ValueError(
                f"the response would be {size} bytes, over the {limit}-byte limit{where} "
                f"({_plural(len(predictions), 'image')}); ask for fewer images per request (instances x num_images), "
                f"a smaller width/height, or format jpeg ({MAX_RESPONSE_BYTES_ENV} changes the limit)"
            )
        return response
