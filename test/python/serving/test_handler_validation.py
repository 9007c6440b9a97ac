"""handler.py without a pipeline: request validation, avatar.json validation, import hygiene."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
from serving_support import HANDLER_PY, avatar_json


def parse(handler_module, data, size=512):
    return handler_module.parse_request(data, default_width=size, default_height=size, trigger="sks person")


def ok(**parameters):
    return {"instances": [{"prompt": "a photo of {avatar}"}], "parameters": parameters}


# --------------------------------------------------------------------------------------------
# requests


def test_defaults_and_placeholder(handler_module):
    request = parse(handler_module, {"instances": [{"prompt": "a photo of {avatar} at {avatar}'s desk"}]})
    assert request["instances"] == [
        {"prompt": "a photo of sks person at sks person's desk", "negative_prompt": None}
    ]
    params = request["parameters"]
    seed = params.pop("seed")
    assert isinstance(seed, int) and 0 <= seed <= 2**32 - 1
    assert params == {"num_images": 1, "steps": 30, "guidance": 7.0, "lora_scale": 1.0, "format": "jpeg",
                      "width": 512, "height": 512}


def test_random_seeds_differ(handler_module):
    seeds = {parse(handler_module, {"instances": ["x"]})["parameters"]["seed"] for _ in range(20)}
    assert len(seeds) > 1


def test_prompts_are_not_rewritten(handler_module):
    request = parse(handler_module, {"instances": ["portrait, oil painting", {"prompt": "sks person", "negative_prompt": "{avatar}"}]})
    assert [i["prompt"] for i in request["instances"]] == ["portrait, oil painting", "sks person"]
    assert request["instances"][1]["negative_prompt"] == "sks person"


def test_all_parameters_and_float_casts(handler_module):
    request = parse(handler_module, ok(num_images=2.0, steps=30.0, guidance=7, seed=42.0, width=1024.0,
                                       height=768, lora_scale=0, format="png"))
    params = request["parameters"]
    assert params == {"num_images": 2, "steps": 30, "guidance": 7.0, "seed": 42, "width": 1024, "height": 768,
                      "lora_scale": 0.0, "format": "png"}
    for key in ("num_images", "steps", "seed", "width", "height"):
        assert type(params[key]) is int, key
    assert type(params["guidance"]) is float and type(params["lora_scale"]) is float


def test_bounds_are_inclusive(handler_module):
    low = parse(handler_module, ok(num_images=1, steps=1, guidance=0, seed=0, width=256, height=256, lora_scale=0))
    high = parse(handler_module, ok(num_images=8, steps=100, guidance=30, seed=2**32 - 1, width=1536, height=1536,
                                    lora_scale=2))
    assert low["parameters"]["seed"] == 0 and high["parameters"]["seed"] == 2**32 - 1
    assert parse(handler_module, {"instances": ["x" * 1000] * 8})["instances"][7]["prompt"] == "x" * 1000


def test_nulls_mean_default(handler_module):
    request = parse(handler_module, {"instances": [{"prompt": "x", "negative_prompt": None}],
                                     "parameters": {"steps": None, "seed": None}})
    assert request["parameters"]["steps"] == 30
    assert request["instances"][0]["negative_prompt"] is None
    assert parse(handler_module, {"instances": ["x"], "parameters": None})["parameters"]["steps"] == 30


@pytest.mark.parametrize(
    "data, fragment",
    [
        (ok(steps=30.5), "parameters.steps must be an integer between 1 and 100"),
        (ok(steps=0), "parameters.steps must be between 1 and 100, got 0"),
        (ok(steps=101), "parameters.steps must be between 1 and 100"),
        (ok(steps="30"), "parameters.steps must be an integer"),
        (ok(steps=True), "parameters.steps must be an integer"),
        (ok(steps=float("nan")), "parameters.steps must be an integer"),
        (ok(steps=float("inf")), "parameters.steps must be an integer"),
        (ok(guidance=30.01), "parameters.guidance must be between 0 and 30"),
        (ok(guidance=-0.5), "parameters.guidance must be between 0 and 30"),
        (ok(guidance="7"), "parameters.guidance must be a number"),
        (ok(guidance=float("nan")), "parameters.guidance must be between 0 and 30"),
        (ok(lora_scale=2.5), "parameters.lora_scale must be between 0 and 2"),
        (ok(width=1544), "parameters.width must be between 256 and 1536"),
        (ok(width=248), "parameters.width must be between 256 and 1536"),
        (ok(height=260), "parameters.height must be a multiple of 8 between 256 and 1536, got 260"),
        (ok(num_images=9), "parameters.num_images must be between 1 and 8"),
        (ok(num_images=0), "parameters.num_images must be between 1 and 8"),
        (ok(seed=-1), "parameters.seed must be between 0 and 4294967295"),
        (ok(seed=2**32), "parameters.seed must be between 0 and 4294967295"),
        (ok(format="gif"), "parameters.format must be one of jpeg, png"),
        (ok(format="JPEG"), "parameters.format must be one of jpeg, png"),
        (ok(num_inference_steps=30), "unknown key 'num_inference_steps' in parameters (did you mean 'steps'?)"),
        (ok(guidance_scale=7), "did you mean 'guidance'?"),
        (ok(sampler="euler"), "unknown key 'sampler' in parameters; allowed: num_images, steps"),
        ({"instances": ["x"], "parameters": [1]}, "parameters must be an object, got list"),
        ({"instances": ["x"], "inputs": "x"}, "unknown key 'inputs' in the request body"),
        ({"inputs": "x"}, "unknown key 'inputs' in the request body; allowed: instances, parameters"),
        ({}, 'the request body needs "instances"'),
        ({"parameters": {}}, 'the request body needs "instances"'),
        ([], "the request body must be a JSON object, got list"),
        ({"instances": "a photo"}, "instances must be a list of 1 to 8 objects, got str"),
        ({"instances": []}, "instances must contain 1 to 8 items, got 0"),
        ({"instances": ["x"] * 9}, "instances must contain 1 to 8 items, got 9"),
        ({"instances": [{}]}, "instances[0].prompt is required"),
        ({"instances": ["x", {"prompt": "y", "style": "z"}]}, "unknown key 'style' in instances[1]; allowed: prompt, negative_prompt"),
        ({"instances": [{"prompt": None}]}, "instances[0].prompt must be a string"),
        ({"instances": [{"prompt": ["a"]}]}, "instances[0].prompt must be a string"),
        ({"instances": [{"prompt": " \n\t"}]}, "instances[0].prompt must not be empty"),
        ({"instances": [""]}, "instances[0].prompt must not be empty"),
        ({"instances": ["x" * 1001]}, "instances[0].prompt is too long: 1001 characters (at most 1000 allowed)"),
        ({"instances": [{"prompt": "x", "negative_prompt": "n" * 1001}]}, "instances[0].negative_prompt is too long"),
        ({"instances": [{"prompt": "x", "negative_prompt": 3}]}, "instances[0].negative_prompt must be a string"),
        ({"instances": [5]}, "instances[0] must be an object"),
    ],
)
def test_invalid_requests(handler_module, data, fragment):
    with pytest.raises(ValueError) as info:
        parse(handler_module, data)
    assert fragment in str(info.value)


def test_error_messages_do_not_echo_huge_values(handler_module):
    with pytest.raises(ValueError) as info:
        parse(handler_module, ok(format="x" * 100_000))
    assert len(str(info.value)) < 300


@pytest.mark.parametrize("resolution, expected", [(64, 256), (512, 512), (1024, 1024), (1003, 1000), (4096, 1536)])
def test_default_size_from_resolution(handler_module, resolution, expected):
    assert handler_module.default_size(resolution) == expected


def test_max_response_bytes_env(handler_module, monkeypatch):
    monkeypatch.delenv("AVATAR_MAX_RESPONSE_BYTES", raising=False)
    assert handler_module.max_response_bytes() == 1_500_000
    monkeypatch.setenv("AVATAR_MAX_RESPONSE_BYTES", "10000000")
    assert handler_module.max_response_bytes() == 10_000_000
    for bad in ("lots", "0", "-5"):
        monkeypatch.setenv("AVATAR_MAX_RESPONSE_BYTES", bad)
        with pytest.raises(ValueError, match="AVATAR_MAX_RESPONSE_BYTES must be a positive integer"):
            handler_module.max_response_bytes()


# --------------------------------------------------------------------------------------------
# avatar.json and the model directory (construction fails before any model is loaded)


def write_model(tmp_path, meta=None, lora=True, raw=None):
    tmp_path.mkdir(parents=True, exist_ok=True)
    if raw is not None:
        (tmp_path / "avatar.json").write_text(raw)
    elif meta is not None:
        (tmp_path / "avatar.json").write_text(json.dumps(meta))
    if lora:
        (tmp_path / "pytorch_lora_weights.safetensors").write_bytes(b"not really")
    return tmp_path


@pytest.mark.parametrize(
    "change, fragment",
    [
        ({"schema": 2}, "unsupported schema 2 (this handler reads schema 1)"),
        ({"schema": True}, "unsupported schema True"),
        ({"schema": None}, "unsupported schema None"),
        ({"pipeline": "flux"}, "unknown pipeline 'flux' (expected one of sd15, sdxl)"),
        ({"base_model": ""}, "'base_model' must be a non-empty string"),
        ({"token": 5}, "'token' must be a non-empty string"),
        ({"class_word": None}, "'class_word' must be a non-empty string"),
        ({"resolution": "512"}, "'resolution' must be a positive integer"),
        ({"resolution": 0}, "'resolution' must be a positive integer"),
        ({"base_revision": 5}, "'base_revision' must be a Hub revision (commit hash) or null, got 5"),
        ({"base_revision": " "}, "'base_revision' must be a Hub revision (commit hash) or null"),
    ],
)
def test_invalid_avatar_json(handler_module, tmp_path, change, fragment):
    meta = dict(avatar_json("sd15", "/nonexistent/base"), **change)
    with pytest.raises(ValueError) as info:
        handler_module.EndpointHandler(str(write_model(tmp_path, meta)))
    assert fragment in str(info.value)


def test_missing_avatar_json(handler_module, tmp_path):
    with pytest.raises(FileNotFoundError, match="avatar.json not found in"):
        handler_module.EndpointHandler(str(write_model(tmp_path)))


def test_avatar_json_not_json(handler_module, tmp_path):
    with pytest.raises(ValueError, match="is not valid JSON"):
        handler_module.EndpointHandler(str(write_model(tmp_path, raw="{schema: 1")))
    with pytest.raises(ValueError, match="must contain a JSON object"):
        handler_module.EndpointHandler(str(write_model(tmp_path, raw="[1]")))


def test_missing_lora_weights(handler_module, tmp_path):
    with pytest.raises(FileNotFoundError, match="pytorch_lora_weights.safetensors not found"):
        handler_module.EndpointHandler(str(write_model(tmp_path, avatar_json("sd15", "/x"), lora=False)))


def test_missing_local_base_model(handler_module, tmp_path):
    with pytest.raises(FileNotFoundError, match="base model directory '/nonexistent/base'"):
        handler_module.EndpointHandler(str(write_model(tmp_path, avatar_json("sd15", "/nonexistent/base"))))


def test_unknown_hub_id_fails_offline_with_a_clear_error(handler_module, tmp_path):
    meta = avatar_json("sdxl", "no-such-org/no-such-model")
    with pytest.raises(RuntimeError, match="could not load the base pipeline 'no-such-org/no-such-model' named in avatar.json "
                       r"\(StableDiffusionXLPipeline\)"):
        handler_module.EndpointHandler(str(write_model(tmp_path, meta)))


def test_import_is_cheap_and_self_contained():
    """Importing handler.py loads no torch/diffusers and imports nothing from the repository."""
    code = (
        "import importlib.util, sys\n"
        f"spec = importlib.util.spec_from_file_location('handler', {str(HANDLER_PY)!r})\n"
        "m = importlib.util.module_from_spec(spec); spec.loader.exec_module(m)\n"
        "heavy = [n for n in ('torch', 'diffusers', 'transformers', 'peft', 'PIL') if n in sys.modules]\n"
        "print(','.join(heavy) or 'none')\n"
    )
    out = subprocess.run([sys.executable, "-I", "-c", code], capture_output=True, text=True, timeout=60, cwd="/")
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "none"
    source = HANDLER_PY.read_text()
    assert "avatar_trainer" not in source and "from handlers" not in source and "import serving" not in source


def test_fp16_variant_falls_back_to_default_weights(handler_module, tiny_sd15_dir):
    """On CUDA the handler asks for fp16 weight files first; a base without them still loads."""
    import torch
    from diffusers import StableDiffusionPipeline

    with pytest.raises(ValueError, match="variant=fp16"):  # so the fallback is really exercised
        StableDiffusionPipeline.from_pretrained(str(tiny_sd15_dir), variant="fp16")
    pipe = handler_module.load_base_pipeline(StableDiffusionPipeline, str(tiny_sd15_dir), torch.float32,
                                             fp16_variant=True)
    assert isinstance(pipe, StableDiffusionPipeline) and pipe.unet.dtype == torch.float32


def test_corrupt_lora_weights_fail_clearly(handler_module, tiny_sd15_dir, tmp_path):
    model = write_model(tmp_path, avatar_json("sd15", tiny_sd15_dir))  # LoRA file = b"not really"
    with pytest.raises(RuntimeError, match="could not load the LoRA weights .*pytorch_lora_weights.safetensors"):
        handler_module.EndpointHandler(str(model))


def test_is_tiny_model(handler_module, tmp_path):
    tiny = tmp_path / "tiny"
    tiny.mkdir()
    assert not handler_module.is_tiny_model(str(tiny))  # no marker
    (tiny / "avatar-tiny.json").write_text('{"avatar_tiny": true}')
    assert handler_module.is_tiny_model(str(tiny))
    (tiny / "avatar-tiny.json").write_text('{"avatar_tiny": "yes"}')
    assert not handler_module.is_tiny_model(str(tiny))
    (tiny / "avatar-tiny.json").write_text("[1]")
    assert not handler_module.is_tiny_model(str(tiny))
    (tiny / "avatar-tiny.json").write_text("{broken")
    assert not handler_module.is_tiny_model(str(tiny))
    assert not handler_module.is_tiny_model("stabilityai/stable-diffusion-xl-base-1.0")


def test_tiny_kit_pipelines_carry_the_marker(handler_module, tiny_sd15_dir, tiny_sdxl_dir):
    assert handler_module.is_tiny_model(str(tiny_sd15_dir)) and handler_module.is_tiny_model(str(tiny_sdxl_dir))
