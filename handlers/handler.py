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
                      "prompt": "a photo of sks person on a beach", "width": 1024, "height": 1024}]}

Self-contained on purpose (the same file runs in the container and in the local server): it
imports nothing from the avatar repository, and nothing heavy at import time.
"""

from __future__ import annotations

import base64
import io
import json
import math
import os
import secrets
import threading
import time
from pathlib import Path
from typing import Any

LORA_WEIGHTS_FILE = "pytorch_lora_weights.safetensors"
AVATAR_JSON = "avatar.json"
SCHEMA = 1
PIPELINES = ("sd15", "sdxl")
AVATAR_PLACEHOLDER = "{avatar}"
MAX_RESPONSE_BYTES_ENV = "AVATAR_MAX_RESPONSE_BYTES"
DEFAULT_MAX_RESPONSE_BYTES = 1_500_000  # Vertex shared public endpoints: 1.5 MB per response
JPEG_QUALITY = 90
ADAPTER_NAME = "avatar"
TINY_MARKER = "avatar-tiny.json"  # written by the tiny-model kit into its pipeline directories

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
INSTANCE_KEYS = ("prompt", "negative_prompt")
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
    hint = PARAMETER_HINTS.get(key) if isinstance(key, str) and where == "parameters" else None
    extra = f" (did you mean {hint!r}?)" if hint else ""
    return ValueError(f"unknown key {key!r} in {where}{extra}; allowed: {', '.join(allowed)}")


def parse_request(data: Any, *, default_width: int, default_height: int, trigger: str) -> dict[str, Any]:
    """Validate a request body; return ``{"instances": [...], "parameters": {...}}`` normalised.

    Raises ValueError naming the field and the allowed range for anything wrong.
    ``trigger`` replaces ``{avatar}`` in prompts (e.g. "sks person").
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
    parsed_instances = []
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
        parsed_instances.append(
            {
                "prompt": prompt.replace(AVATAR_PLACEHOLDER, trigger),
                "negative_prompt": negative.replace(AVATAR_PLACEHOLDER, trigger) or None,
            }
        )

    parameters = data.get("parameters")
    if parameters is None:
        parameters = {}
    if not isinstance(parameters, dict):
        raise ValueError(f"parameters must be an object, got {type(parameters).__name__}")
    for key in parameters:
        if key not in PARAMETER_NAMES:
            raise _unknown_key_error(key, "parameters", PARAMETER_NAMES)
    result: dict[str, Any] = dict(DEFAULTS, width=default_width, height=default_height, seed=None)
    for key, value in parameters.items():
        if value is None:  # explicit null = default
            continue
        name = f"parameters.{key}"
        if key in INT_PARAMETERS:
            result[key] = _integer(value, name, *INT_PARAMETERS[key])
        elif key in FLOAT_PARAMETERS:
            result[key] = _number(value, name, *FLOAT_PARAMETERS[key])
        elif key == "format":
            if value not in FORMATS:
                raise ValueError(f"{name} must be one of {', '.join(FORMATS)}, got {_describe(value)}")
            result[key] = value
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


def load_base_pipeline(pipeline_class: Any, base_model: str, dtype: Any, *, fp16_variant: bool) -> Any:
    """from_pretrained with a clear error. On CUDA the fp16 weight files are tried first (half the
    download for Hub models that ship them), then the default ones."""
    errors = []
    for variant in (["fp16", None] if fp16_variant else [None]):
        try:
            return pipeline_class.from_pretrained(base_model, torch_dtype=dtype, variant=variant)
        except Exception as exc:  # noqa: BLE001 - reported below with the model name
            errors.append(exc)
    raise RuntimeError(
        f"could not load the base pipeline {base_model!r} named in avatar.json "
        f"({pipeline_class.__name__}): {errors[-1]}"
    ) from errors[-1]


# ---------------------------------------------------------------------------------------------
# the handler


class EndpointHandler:
    """Loads the base pipeline named by avatar.json plus the avatar's LoRA, once."""

    def __init__(self, path: str = ""):
        started = time.perf_counter()
        self.model_dir = Path(path or ".").resolve()
        self.meta = read_avatar_json(self.model_dir)
        lora_path = self.model_dir / LORA_WEIGHTS_FILE
        if not lora_path.is_file():
            raise FileNotFoundError(f"{LORA_WEIGHTS_FILE} not found in {str(self.model_dir)!r}")
        self.kind = self.meta["pipeline"]
        self.base_model = self.meta["base_model"]
        self.trigger = f"{self.meta['token']} {self.meta['class_word']}"
        self.default_size = default_size(self.meta["resolution"])
        if self.base_model.startswith("/") and not Path(self.base_model).is_dir():
            raise FileNotFoundError(
                f"base model directory {self.base_model!r} (avatar.json base_model) does not exist"
            )

        import torch
        from diffusers import StableDiffusionPipeline, StableDiffusionXLPipeline

        self._torch = torch
        if torch.cuda.is_available():
            self.device, self.dtype = "cuda", torch.float16
        else:
            self.device, self.dtype = "cpu", torch.float32
            if is_tiny_model(self.base_model) and not os.environ.get("OMP_NUM_THREADS"):
                # The tiny random models of the local demo/tests are too small for intra-op
                # parallelism: one thread is faster, and 10-30x faster on a busy machine where
                # OpenMP threads spin against each other. Real models keep torch's default.
                torch.set_num_threads(1)
        pipeline_class = StableDiffusionXLPipeline if self.kind == "sdxl" else StableDiffusionPipeline
        pipe = load_base_pipeline(pipeline_class, self.base_model, self.dtype, fp16_variant=self.device == "cuda")
        try:
            pipe.load_lora_weights(str(self.model_dir), weight_name=LORA_WEIGHTS_FILE, adapter_name=ADAPTER_NAME)
        except Exception as exc:
            raise RuntimeError(
                f"could not load the LoRA weights {str(lora_path)!r} into the {self.kind} base "
                f"{self.base_model!r}: {exc}"
            ) from exc
        pipe.to(self.device)
        pipe.set_progress_bar_config(disable=True)
        self.pipe = pipe
        self._lock = threading.Lock()
        self.load_seconds = time.perf_counter() - started

    def __call__(self, data: Any) -> dict[str, Any]:
        request = parse_request(
            data, default_width=self.default_size, default_height=self.default_size, trigger=self.trigger
        )
        params = request["parameters"]
        limit = max_response_bytes()
        torch = self._torch
        predictions = []
        with self._lock, torch.inference_mode():
            for instance in request["instances"]:
                seeds = [(params["seed"] + k) % (MAX_SEED + 1) for k in range(params["num_images"])]
                # CPU generators: the same seed gives the same starting noise on any device.
                generators = [torch.Generator("cpu").manual_seed(seed) for seed in seeds]
                images = self.pipe(
                    prompt=instance["prompt"],
                    negative_prompt=instance["negative_prompt"],
                    num_inference_steps=params["steps"],
                    guidance_scale=params["guidance"],
                    width=params["width"],
                    height=params["height"],
                    num_images_per_prompt=params["num_images"],
                    generator=generators,
                    cross_attention_kwargs={"scale": params["lora_scale"]},
                    output_type="pil",
                ).images
                for seed, image in zip(seeds, images):
                    predictions.append(
                        {
                            "image_b64": encode_image(image, params["format"]),
                            "mime_type": FORMATS[params["format"]],
                            "seed": seed,
                            "prompt": instance["prompt"],
                            "width": image.width,
                            "height": image.height,
                        }
                    )
        response = {"predictions": predictions}
        size = len(json.dumps(response))
        if size > limit:
            raise ValueError(
                f"the response would be {size} bytes, over the {limit}-byte limit of a shared Vertex endpoint "
                f"({len(predictions)} image{'s' if len(predictions) != 1 else ''}); ask for fewer images per request (instances x num_images), "
                f"a smaller width/height, or format jpeg ({MAX_RESPONSE_BYTES_ENV} changes the limit)"
            )
        return response
