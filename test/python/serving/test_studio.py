"""handler.py in studio mode on the tiny SD 1.x pipeline: one base, avatars' LoRAs loaded from
their model directories on first request, an LRU of adapters, the manifest re-read when it changes.

One studio handler for the module (AVATAR_STUDIO_MAX_ADAPTERS=2); each test writes the manifest it
needs first. 1-step, guidance-0, 256 px images.
"""

from __future__ import annotations

import base64
import io
import json

import numpy as np
import pytest
from PIL import Image
from serving_support import build_avatar_dir, build_studio_dir, write_studio_manifest

# 2 steps: with 1 the schedule samples only t=1, where the UNet (and so the LoRA) barely acts.
FAST = {"steps": 2, "guidance": 0, "format": "png"}


def image(handler, avatar, seed=7):
    result = handler({"instances": [{"prompt": "a photo of {avatar}"}], "parameters": dict(FAST, avatar=avatar, seed=seed)})
    raw = base64.b64decode(result["predictions"][0]["image_b64"])
    return np.asarray(Image.open(io.BytesIO(raw)).convert("RGB")).astype(np.int16)


@pytest.fixture(scope="module")
def studio(handler_module, tiny_sd15_dir, tmp_path_factory, _torch_threads_restored):
    work = tmp_path_factory.mktemp("studio")
    avatars = {name: build_avatar_dir("sd15", tiny_sd15_dir, work / name, name, seed=seed)
               for name, seed in (("alice", 1), ("bob", 2), ("carol", 3))}
    manifest = write_studio_manifest(work / "manifest.json", "sd15", tiny_sd15_dir, {"alice": avatars["alice"], "bob": avatars["bob"]})
    model = build_studio_dir("sd15", tiny_sd15_dir, work / "studio-model", manifest)
    mp = pytest.MonkeyPatch()
    mp.setenv("AVATAR_STUDIO_MAX_ADAPTERS", "2")
    handler = handler_module.EndpointHandler(str(model))
    mp.undo()

    def serve(names):
        write_studio_manifest(manifest, "sd15", tiny_sd15_dir, {n: avatars[n] for n in names})

    return {"handler": handler, "avatars": avatars, "serve": serve, "manifest": manifest, "work": work}


def test_each_avatar_gets_its_own_lora_and_nothing_leaks(studio, handler_module):
    studio["serve"](["alice", "bob"])
    handler = studio["handler"]
    alice_before = image(handler, "alice")
    bob = image(handler, "bob")
    alice_after = image(handler, "alice")
    assert np.array_equal(alice_before, alice_after), "bob's request changed alice's image"
    assert np.abs(alice_before - bob).mean() > 0.5, "alice and bob gave the same image"
    # The studio's alice is exactly alice's own endpoint.
    own = handler_module.EndpointHandler(str(_with_handler(studio["avatars"]["alice"])))
    assert np.array_equal(image(own, "alice"), alice_before)


def _with_handler(model_dir):
    from serving_support import HANDLER_PY
    import shutil

    shutil.copy2(HANDLER_PY, model_dir / "handler.py")
    return model_dir


def test_unknown_or_missing_avatar_is_a_clear_error_naming_the_served_ones(studio):
    studio["serve"](["alice", "bob"])
    with pytest.raises(ValueError, match=r"unknown avatar 'dave': studio family serves alice, bob"):
        studio["handler"]({"instances": ["x"], "parameters": dict(FAST, avatar="dave")})
    with pytest.raises(ValueError, match=r"parameters.avatar is required: studio family serves alice, bob"):
        studio["handler"]({"instances": ["x"], "parameters": FAST})
    with pytest.raises(ValueError, match="parameters.avatar must be an avatar name"):
        studio["handler"]({"instances": ["x"], "parameters": dict(FAST, avatar=3)})


def test_lru_keeps_at_most_the_configured_adapters_and_reloads_an_evicted_one(studio):
    studio["serve"](["alice", "bob", "carol"])
    handler = studio["handler"]
    first = image(handler, "alice")
    image(handler, "bob")
    image(handler, "carol")  # third avatar, capacity 2: alice (least recently used) goes
    assert list(handler._adapters) == ["bob", "carol"]
    assert set(handler.pipe.get_list_adapters()["unet"]) == {"avatar_bob", "avatar_carol"}
    assert np.array_equal(image(handler, "alice"), first)  # loaded again, same image
    assert list(handler._adapters) == ["carol", "alice"]


def test_manifest_changes_are_seen_without_a_new_handler(studio):
    handler = studio["handler"]
    studio["serve"](["alice"])
    with pytest.raises(ValueError, match="unknown avatar 'carol': studio family serves alice"):
        image(handler, "carol")
    studio["serve"](["alice", "carol"])  # added: no redeploy
    assert image(handler, "carol").shape == (256, 256, 3)
    studio["serve"](["carol"])  # removed: its adapter goes too
    with pytest.raises(ValueError, match="unknown avatar 'alice'"):
        image(handler, "alice")
    assert "alice" not in handler._adapters
    assert "avatar_alice" not in handler.pipe.get_list_adapters().get("unet", [])



def test_another_checkpoint_of_the_same_run_is_loaded_not_the_cached_one(studio, tiny_sd15_dir):
    # A run can have a version per checkpoint (runs/<run>/model, model-step-NNNNNN): same run id,
    # another model folder. Switching the studio to it must serve its LoRA, not the cached one.
    studio["serve"](["alice"])
    handler = studio["handler"]
    first = image(handler, "alice")
    run_id = json.loads((studio["avatars"]["alice"] / "avatar.json").read_text())["run_id"]
    step = build_avatar_dir("sd15", tiny_sd15_dir, studio["work"] / "alice-step", "alice", seed=9)
    meta = json.loads((step / "avatar.json").read_text())
    (step / "avatar.json").write_text(json.dumps(dict(meta, run_id=run_id)))
    body = json.loads(studio["manifest"].read_text())
    body["avatars"]["alice"] = {"model_uri": str(step), "run_id": run_id, "version": "2"}
    studio["manifest"].write_text(json.dumps(body))
    assert np.abs(image(handler, "alice") - first).mean() > 0.5, "the other checkpoint served the cached LoRA"

def test_an_avatar_of_another_base_is_refused_with_the_reason(studio, tiny_sd15_dir):
    other = studio["work"] / "other"
    build_avatar_dir("sd15", tiny_sd15_dir, other, "olga", seed=4)
    meta = json.loads((other / "avatar.json").read_text())
    (other / "avatar.json").write_text(json.dumps(dict(meta, base_model="/somewhere/else")))
    body = json.loads(studio["manifest"].read_text())
    body["avatars"]["olga"] = {"model_uri": str(other), "run_id": meta["run_id"], "version": "1"}
    studio["manifest"].write_text(json.dumps(body))
    with pytest.raises(ValueError, match=r"avatar 'olga' was trained on base_model '/somewhere/else', but studio family serves"):
        image(studio["handler"], "olga")


def test_single_avatar_endpoints_accept_their_own_name_only(sd15_handler):
    with pytest.raises(ValueError, match="this endpoint serves 'tiny' only"):
        sd15_handler({"instances": ["x"], "parameters": dict(FAST, avatar="bob")})
    result = sd15_handler({"instances": ["x"], "parameters": dict(FAST, avatar="tiny")})
    assert len(result["predictions"]) == 1


def test_a_failed_fetch_leaves_nothing_in_the_cache(handler_module, tmp_path, monkeypatch):
    # The studio's LoRA cache trusts any file it finds: a copy cut short must not leave one.
    reader = handler_module.ObjectReader()
    source = tmp_path / "lora.safetensors"
    source.write_bytes(b"weights")
    dest = tmp_path / "cache" / "lora.safetensors"
    dest.parent.mkdir()
    reader.fetch(str(source), dest)
    assert dest.read_bytes() == b"weights"

    def cut_short(src, dst):
        with open(dst, "wb") as out:
            out.write(b"wei")
        raise OSError("connection reset")

    monkeypatch.setattr(handler_module.shutil, "copyfile", cut_short)
    again = tmp_path / "cache" / "avatar.json"
    with pytest.raises(OSError, match="connection reset"):
        reader.fetch(str(source), again)
    assert sorted(p.name for p in dest.parent.iterdir()) == ["lora.safetensors"]
