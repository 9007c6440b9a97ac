"""Issue #13 on the handler: no request leaves state behind (LoRA scale, VAE mode), a client that
went away stops the pipeline at the next step, the base loads at the recorded Hub revision, and
the safety checker's verdict is reported per image.

Tiny random pipelines on CPU, 256 px, 2-3 steps.
"""

from __future__ import annotations

import base64
import io
import json
import logging
import shutil

import numpy as np
import pytest
from PIL import Image
from serving_support import build_model_dir

# Two steps at least: with one the schedule samples only t=1, where the UNet barely acts.
DEFAULT = {"instances": ["a photo of {avatar}"], "parameters": {"steps": 3, "guidance": 0, "seed": 11, "format": "png"}}


class SimulatedOOM(RuntimeError):
    pass


def decode(prediction) -> Image.Image:
    return Image.open(io.BytesIO(base64.b64decode(prediction["image_b64"])))


def pixels(prediction) -> np.ndarray:
    return np.asarray(decode(prediction).convert("RGB")).astype(np.int16)


@pytest.fixture(params=["sd15", "sdxl"])
def fresh_handler(request, handler_module, _torch_threads_restored):
    """A handler nothing has run on yet (not the session one): (kind, handler)."""
    model_dir = request.getfixturevalue(f"{request.param}_model_dir")
    return request.param, handler_module.EndpointHandler(str(model_dir))


def fail_inside_the_unet(handler):
    """Make the next UNet forward raise halfway through (after diffusers scaled the LoRA layers
    for the request, before it would unscale them): what a CUDA OOM does."""
    def boom(module, args):
        raise SimulatedOOM("CUDA out of memory (simulated, in the UNet mid block)")

    return handler.pipe.unet.mid_block.register_forward_pre_hook(boom)


def test_a_request_failing_mid_pipeline_does_not_change_the_next_default_image(fresh_handler):
    kind, handler = fresh_handler
    reference = handler(DEFAULT)["predictions"][0]  # a default request on a fresh handler

    hook = fail_inside_the_unet(handler)
    try:
        with pytest.raises(SimulatedOOM):
            handler(dict(DEFAULT, parameters=dict(DEFAULT["parameters"], lora_scale=0.5, seed=3)))
    finally:
        hook.remove()

    after = handler(DEFAULT)["predictions"][0]
    assert after["seed"] == reference["seed"] == 11
    assert after["image_b64"] == reference["image_b64"], np.abs(pixels(after) - pixels(reference)).mean()


def test_a_cancelled_request_stops_at_the_next_step_and_leaves_nothing_behind(fresh_handler, handler_module):
    """The local server's hook: a client gone away stops the pipeline at a step boundary."""
    kind, handler = fresh_handler
    reference = handler(DEFAULT)["predictions"][0]

    unet_calls = []
    counter = handler.pipe.unet.register_forward_pre_hook(lambda module, args: unet_calls.append(1))
    handler.is_cancelled = lambda: len(unet_calls) >= 1  # the client leaves during the first step
    try:
        with pytest.raises(handler_module.RequestCancelled) as info:
            handler(dict(DEFAULT, parameters=dict(DEFAULT["parameters"], lora_scale=0.25, steps=50, num_images=2)))
    finally:
        handler.is_cancelled = None
        counter.remove()
    assert str(info.value) == "the client went away: generation stopped after step 1 of 50"
    assert len(unet_calls) == 1  # not 50

    after = handler(DEFAULT)["predictions"][0]
    assert after["image_b64"] == reference["image_b64"]


def test_vae_decodes_one_image_at_a_time_and_tiles_only_above_1024(sd15_handler):
    vae = sd15_handler.pipe.vae
    assert vae.use_slicing
    params = {"lora_scale": 1.0, "width": 1032, "height": 1024}
    sd15_handler._prepare(params)
    assert vae.use_tiling
    sd15_handler._prepare(dict(params, width=1024))
    assert not vae.use_tiling  # set per request, both ways: a large request leaves no tiling behind


def test_the_lora_scale_is_set_absolutely_for_each_request(sd15_handler):
    """Whatever a previous request left in the LoRA layers, the next one starts from its own scale."""
    layers = [m for m in sd15_handler.pipe.unet.modules() if hasattr(m, "scaling") and "avatar" in m.scaling]
    assert layers
    for layer in layers:
        layer.scaling["avatar"] *= 0.5  # what diffusers leaves after a UNet forward that raised
    sd15_handler._prepare({"lora_scale": 1.0, "width": 256, "height": 256})
    assert {layer.scaling["avatar"] for layer in layers} == {1.0}  # lora_alpha = rank: scaling 1


# ---------------------------------------------------------------------------------------------
# the safety checker


def with_flagging_safety_checker(base_dir, out_dir):
    """A copy of the tiny SD 1.x base with a tiny real StableDiffusionSafetyChecker whose concept
    thresholds (-1) flag every image, as SD 1.5's does for an NSFW one."""
    import torch
    from diffusers import StableDiffusionPipeline
    from diffusers.pipelines.stable_diffusion.safety_checker import StableDiffusionSafetyChecker
    from transformers import CLIPConfig, CLIPImageProcessor

    small = {"hidden_size": 32, "intermediate_size": 37, "num_attention_heads": 4, "num_hidden_layers": 2}
    config = CLIPConfig(text_config=dict(small, vocab_size=1000),
                        vision_config=dict(small, image_size=32, patch_size=4), projection_dim=16)
    torch.manual_seed(0)
    checker = StableDiffusionSafetyChecker(config).eval()
    with torch.no_grad():
        checker.concept_embeds_weights.fill_(-1.0)
    extractor = CLIPImageProcessor(size={"shortest_edge": 32}, crop_size={"height": 32, "width": 32})
    base = StableDiffusionPipeline.from_pretrained(str(base_dir))
    components = dict(base.components, safety_checker=checker, feature_extractor=extractor)
    StableDiffusionPipeline(**components, requires_safety_checker=True).save_pretrained(str(out_dir))
    shutil.copy2(base_dir / "avatar-tiny.json", out_dir / "avatar-tiny.json")
    return out_dir


@pytest.fixture(scope="module")
def flagging_handler(handler_module, tiny_sd15_dir, tmp_path_factory, _torch_threads_restored):
    base = with_flagging_safety_checker(tiny_sd15_dir, tmp_path_factory.mktemp("base-with-checker"))
    model_dir = build_model_dir("sd15", base, tmp_path_factory.mktemp("model-with-checker"))
    return handler_module.EndpointHandler(str(model_dir))


def test_the_safety_checker_is_kept_and_its_verdict_reported(flagging_handler):
    assert flagging_handler.pipe.safety_checker is not None  # the policy: keep the base's checker
    body = {"instances": ["{avatar}", "{avatar} smiling"], "parameters": {"steps": 2, "guidance": 0, "seed": 4}}
    predictions = flagging_handler(body)["predictions"]
    assert [p["nsfw"] for p in predictions] == [True, True]
    for prediction in predictions:
        assert np.asarray(decode(prediction)).max() <= 8  # blacked out (JPEG noise aside)


def test_nsfw_flags_follow_the_pipeline_output(handler_module):
    class Output:
        nsfw_content_detected = [False, True, np.bool_(False)]

    assert handler_module.nsfw_flags(Output(), 3) == [False, True, False]
    assert handler_module.nsfw_flags(object(), 2) == [False, False]  # SDXL: no checker, no field

    class NoChecker:
        nsfw_content_detected = None

    assert handler_module.nsfw_flags(NoChecker(), 1) == [False]


# ---------------------------------------------------------------------------------------------
# the base at the recorded Hub revision

REPO = "avatar-test/tiny-sd15"
PINNED, MAIN = "a" * 40, "b" * 40


@pytest.fixture(scope="module")
def hub_cache(tiny_sd15_dir, tmp_path_factory):
    """A Hub cache (offline) with two commits of the repo: PINNED (the tiny base) and MAIN (the
    same architecture, other weights: what a later push to the Hub would be), refs/main → MAIN."""
    from avatar_trainer.tiny import build_tiny_pipeline

    cache = tmp_path_factory.mktemp("hub")
    repo = cache / f"models--{REPO.replace('/', '--')}"
    shutil.copytree(tiny_sd15_dir, repo / "snapshots" / PINNED)
    build_tiny_pipeline("sd15", repo / "snapshots" / MAIN, seed=1)
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text(MAIN)
    return cache


@pytest.fixture()
def hub_model_dir(hub_cache, tiny_sd15_dir, tmp_path, monkeypatch):
    import huggingface_hub.constants

    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(hub_cache))
    model_dir = build_model_dir("sd15", tiny_sd15_dir, tmp_path / "model")

    def record(**changes):
        meta = dict(json.loads((model_dir / "avatar.json").read_text()), base_model=REPO, **changes)
        (model_dir / "avatar.json").write_text(json.dumps(meta))
        return model_dir

    return record


def conv_in(pipe_or_dir):
    import torch
    from diffusers import UNet2DConditionModel

    if isinstance(pipe_or_dir, torch.nn.Module):
        return pipe_or_dir.conv_in.weight.detach()
    return UNet2DConditionModel.from_pretrained(str(pipe_or_dir), subfolder="unet").conv_in.weight.detach()


def test_the_base_loads_at_the_recorded_revision(handler_module, hub_model_dir, hub_cache, caplog):
    import torch

    model_dir = hub_model_dir(base_revision=PINNED)
    with caplog.at_level(logging.WARNING, logger="avatar.handler"):
        handler = handler_module.EndpointHandler(str(model_dir))
    assert handler.base_revision == PINNED
    snapshots = hub_cache / f"models--{REPO.replace('/', '--')}" / "snapshots"
    assert torch.equal(conv_in(handler.pipe.unet), conv_in(snapshots / PINNED))
    assert not torch.equal(conv_in(handler.pipe.unet), conv_in(snapshots / MAIN))  # not what main is now
    assert "base_revision" not in caplog.text
    [prediction] = handler({"instances": ["{avatar}"], "parameters": {"steps": 1, "seed": 1}})["predictions"]
    assert decode(prediction).size == (256, 256)


def test_a_base_without_a_revision_still_loads_with_a_warning(handler_module, hub_model_dir, hub_cache, caplog):
    import torch

    model_dir = hub_model_dir()  # an older avatar.json: no base_revision
    with caplog.at_level(logging.WARNING, logger="avatar.handler"):
        handler = handler_module.EndpointHandler(str(model_dir))
    assert handler.base_revision is None
    main = hub_cache / f"models--{REPO.replace('/', '--')}" / "snapshots" / MAIN
    assert torch.equal(conv_in(handler.pipe.unet), conv_in(main))  # the Hub's current files
    [record] = [r for r in caplog.records if "base_revision" in r.getMessage()]
    assert record.levelno == logging.WARNING and record.name == "avatar.handler"
    assert f"loading the current Hub revision of {REPO}" in record.getMessage()


def test_a_local_base_needs_no_revision(handler_module, sd15_model_dir, caplog, _torch_threads_restored):
    with caplog.at_level(logging.WARNING, logger="avatar.handler"):
        handler_module.EndpointHandler(str(sd15_model_dir))
    assert "base_revision" not in caplog.text
