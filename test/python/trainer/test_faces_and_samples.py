"""Face-weighted loss (faces.json → soft mask at latent resolution) and samples at checkpoints.

Contract A: the dataset zip may hold `faces.json` = {"schema":1,"images":{name:{width,height,box}}}.
Contract B: every complete checkpoint holds pytorch_lora_weights.safetensors (the final model's
format) and, when sampled, samples/sample-0..3.png + samples/samples.json; pruning removes only
the resume state of older checkpoints.
"""

from __future__ import annotations

import io
import json
import zipfile

import pytest
import torch
from PIL import Image, ImageDraw
from safetensors.torch import load_file

from avatar_trainer import data, masks
from avatar_trainer.errors import TrainerError
from avatar_trainer.train import FAIL_AFTER_STEP_ENV

from .conftest import kv, run_inprocess, train_args

WEIGHTS = "pytorch_lora_weights.safetensors"
RESUME_FILES = {"lora.safetensors", "optimizer.pt", "rng.pt"}
KINDS = ["close-up", "three-quarter", "style", "setting"]


def write_zip(path, entries: dict[str, bytes]):
    with zipfile.ZipFile(path, "w") as zf:
        for name, blob in sorted(entries.items()):
            zf.writestr(zipfile.ZipInfo(name, date_time=(2020, 1, 1, 0, 0, 0)), blob)
    return path


def jpeg(img) -> bytes:
    buf = io.BytesIO()
    img.save(buf, format="JPEG", quality=95)
    return buf.getvalue()


def faces_zip(src_zip, dest, box_for=lambda name, w, h: [w // 4, h // 5, 3 * w // 4, 4 * h // 5], skip=()):
    """`src_zip`'s images plus a faces.json (boxes from `box_for`); names in `skip` get no entry."""
    with zipfile.ZipFile(src_zip) as zf:
        entries = {n: zf.read(n) for n in zf.namelist()}
    images = {}
    for name, blob in entries.items():
        if name in skip:
            continue
        w, h = Image.open(io.BytesIO(blob)).size
        images[name] = {"width": w, "height": h, "box": box_for(name, w, h)}
    entries["faces.json"] = json.dumps({"schema": 1, "images": images}).encode()
    return write_zip(dest, entries)


# --- the mask lands on the face ------------------------------------------------------------------

def _face_photo(w, h, box):
    """Black photo with a white 'face' exactly filling `box`."""
    img = Image.new("RGB", (w, h))
    ImageDraw.Draw(img).rectangle([box[0], box[1], box[2] - 1, box[3] - 1], fill=(255, 255, 255))
    return img


@pytest.mark.parametrize("size, box, flip", [
    ((200, 100), (130, 20, 170, 70), False),  # landscape: crop cuts the sides; face right of centre
    ((200, 100), (130, 20, 170, 70), True),  # mirrored with the image
    ((90, 240), (20, 90, 60, 150), False),  # portrait: crop cuts top and bottom
])
def test_mask_built_from_box_lands_on_the_face_after_crop_resize_and_flip(tmp_path, size, box, flip):
    w, h = size
    blob = jpeg(_face_photo(w, h, box))
    manifest = {"schema": 1, "images": {"0001.jpg": {"width": w, "height": h, "box": list(box)}}}
    z = write_zip(tmp_path / "d.zip", {"0001.jpg": blob, "faces.json": json.dumps(manifest).encode()})
    [src] = data.load_zip(z)
    assert src.face_box == box
    prep = data.center_crop_resize(src.image, 64, src.original_size, flip=flip, face_box=src.face_box)
    mask = masks.face_mask(prep.face_box, 64, 8, 0.4)  # latent resolution: 64 px / 8
    assert mask.shape == (1, 1, 8, 8)
    # Where the white face is in the crop, per latent cell (mean brightness of its 8x8 pixels).
    pixels = torch.from_numpy(__import__("numpy").asarray(prep.image.convert("L"), dtype="float32")) / 255
    cells = pixels.reshape(8, 8, 8, 8).mean(dim=(1, 3))
    face_cells = cells > 0.5
    assert face_cells.any()
    assert torch.all(mask[0, 0][face_cells] == 1.0)  # all of the face at full weight
    far = cells == 0  # latent cells with no face pixel at all
    assert torch.isclose(mask[0, 0][far].min(), torch.tensor(0.4))  # background at --mask-weight
    assert (mask[0, 0][far] < 1.0).sum() >= far.sum() // 2  # the mask is local, not everywhere
    assert mask.min() >= 0.4 and mask.max() <= 1.0


def test_no_manifest_or_no_entry_means_uniform_weight(tmp_path, dataset_zip):
    plain = data.load_zip(dataset_zip)
    assert all(s.face_box is None for s in plain)
    assert torch.equal(masks.face_mask(None, 64, 8, 0.4), torch.ones(1, 1, 8, 8))
    names = [s.name for s in plain]
    some = data.load_zip(faces_zip(dataset_zip, tmp_path / "f.zip", skip={names[0]}))
    assert some[0].face_box is None and all(s.face_box is not None for s in some[1:])
    # --mask-weight 1.0 turns weighting off even where a face is known.
    assert torch.equal(masks.face_mask(some[1].face_box, 64, 8, 1.0), torch.ones(1, 1, 8, 8))


def test_manifest_written_for_another_size_is_scaled(tmp_path):
    blob = jpeg(Image.new("RGB", (100, 50)))
    manifest = {"schema": 1, "images": {"a.jpg": {"width": 200, "height": 100, "box": [20, 10, 60, 90]}}}
    z = write_zip(tmp_path / "d.zip", {"a.jpg": blob, "faces.json": json.dumps(manifest).encode()})
    assert data.load_zip(z)[0].face_box == (10, 5, 30, 45)


@pytest.mark.parametrize("manifest, message", [
    (b"{nope", "is not valid JSON"),
    (json.dumps({"schema": 2, "images": {}}).encode(), "is not a face manifest"),
    (json.dumps({"schema": 1, "images": {"b.jpg": {"width": 10, "height": 10, "box": [0, 0, 5, 5]}}}).encode(),
     "names 'b.jpg', which is not an image of the dataset"),
    (json.dumps({"schema": 1, "images": {"a.jpg": {"width": 10, "height": 10, "box": [0, 0, 50, 5]}}}).encode(),
     "outside the 10x10 image 'a.jpg'"),
    (json.dumps({"schema": 1, "images": {"a.jpg": {"width": 10, "box": [0, 0, 5, 5]}}}).encode(),
     "malformed entry for 'a.jpg'"),
])
def test_broken_manifest_is_a_clear_error(tmp_path, manifest, message):
    z = write_zip(tmp_path / "d.zip", {"a.jpg": jpeg(Image.new("RGB", (10, 10))), "faces.json": manifest})
    with pytest.raises(TrainerError) as e:
        data.load_zip(z)
    assert "faces.json" in str(e.value) and message in str(e.value) and "avatar prepare" in str(e.value)


# --- the weighted loss ---------------------------------------------------------------------------

def test_masked_loss_equals_plain_loss_at_weight_one_and_differs_otherwise():
    import torch.nn.functional as F

    g = torch.Generator().manual_seed(0)
    pred, target = torch.randn(1, 4, 8, 8, generator=g), torch.randn(1, 4, 8, 8, generator=g)
    plain = F.mse_loss(pred, target)
    box = (16.0, 8.0, 40.0, 40.0)
    off = masks.weighted_mse(pred, target, masks.face_mask(box, 64, 8, 1.0))
    torch.testing.assert_close(off, plain, rtol=1e-6, atol=0)
    assert masks.weighted_mse(pred, target, None) == plain
    on = masks.weighted_mse(pred, target, masks.face_mask(box, 64, 8, 0.4))
    assert abs(float(on) - float(plain)) > 1e-3
    # Normalised: a uniform error field has the same loss with or without the mask.
    uniform = torch.full_like(pred, 0.5)
    torch.testing.assert_close(masks.weighted_mse(uniform, torch.zeros_like(pred), masks.face_mask(box, 64, 8, 0.4)),
                               torch.tensor(0.25))


# --- training with masks and samples -------------------------------------------------------------

STEPS = "4"


def _argv(base, ds, root, *extra):
    return train_args(base, ds, root / "model", root / "ckpt", "--steps", STEPS, "--keep-checkpoints", "1",
                      "--samples-every", "2", *extra)


@pytest.fixture(scope="module")
def faces_dataset(dataset_zip, tmp_path_factory):
    return faces_zip(dataset_zip, tmp_path_factory.mktemp("faces") / "faces.zip")


@pytest.fixture(scope="module")
def masked_run(tiny_sd15_dir, faces_dataset, tmp_path_factory):
    root = tmp_path_factory.mktemp("masked")
    run = run_inprocess(_argv(tiny_sd15_dir, faces_dataset, root), root / "model", root / "ckpt")
    assert run.code == 0, run.stderr
    return run


def _weights(path):
    return load_file(str(path / WEIGHTS))


def _same(a: dict, b: dict) -> bool:
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def test_mask_phase_is_logged(masked_run):
    assert masked_run.phase("data")["faces"] == "6"
    m = masked_run.phase("masks")
    assert (m["images"], m["masked"], m["unmasked"], m["mask_weight"]) == ("6", "6", "0", "0.4000")
    meta = json.loads((masked_run.out_dir / "avatar.json").read_text())
    assert (meta["mask_weight"], meta["masked_images"], meta["flip"], meta["samples_every"]) == (0.4, 6, False, 2)


def _assert_contract_b(ckpt, step, res=64):
    assert (ckpt / "COMPLETE").is_file() and (ckpt / WEIGHTS).is_file()
    doc = json.loads((ckpt / "samples" / "samples.json").read_text())
    assert doc["step"] == step
    assert [s["kind"] for s in doc["samples"]] == KINDS
    assert [s["file"] for s in doc["samples"]] == [f"sample-{i}.png" for i in range(4)]
    assert all("sks person" in s["prompt"] and isinstance(s["seed"], int) for s in doc["samples"])
    assert len({s["prompt"] for s in doc["samples"]}) == 4
    for s in doc["samples"]:
        with Image.open(ckpt / "samples" / s["file"]) as im:
            assert (im.format, im.size, im.mode) == ("PNG", (res, res), "RGB")
    return doc


def test_every_sampled_checkpoint_has_weights_and_samples_and_pruning_keeps_them(masked_run):
    ck = masked_run.ckpt_dir
    assert sorted(p.name for p in ck.iterdir()) == ["checkpoint-000002", "checkpoint-000004"]
    docs = [_assert_contract_b(ck / f"checkpoint-{s:06d}", s) for s in (2, 4)]
    assert docs[0]["samples"] == docs[1]["samples"]  # same prompts and seeds at every checkpoint
    # --keep-checkpoints 1: the older one lost only its resume state.
    old = {p.name for p in (ck / "checkpoint-000002").iterdir()}
    assert old == {"COMPLETE", WEIGHTS, "samples", "state.json"}
    assert RESUME_FILES <= {p.name for p in (ck / "checkpoint-000004").iterdir()}
    # The final checkpoint's weights are the exported model, byte for byte.
    assert (ck / "checkpoint-000004" / WEIGHTS).read_bytes() == (masked_run.out_dir / WEIGHTS).read_bytes()
    # The LoRA changed between checkpoints, and the samples with it.
    assert not _same(_weights(ck / "checkpoint-000002"), _weights(ck / "checkpoint-000004"))
    assert any((ck / "checkpoint-000002" / "samples" / f).read_bytes() != (ck / "checkpoint-000004" / "samples" / f)
               .read_bytes() for f in ("sample-0.png", "sample-3.png"))
    lines = [kv(ln) for ln in masked_run.lines if ln.startswith("samples ")]
    assert [(ln["step"], ln["images"]) for ln in lines] == [("2", "4"), ("4", "4")]


def test_checkpoint_weights_load_like_the_final_model(masked_run, tiny_sd15_dir):
    """handlers/handler.py loads `pipe.load_lora_weights(dir, weight_name=WEIGHTS)`: so can any checkpoint."""
    from diffusers import StableDiffusionPipeline

    pipe = StableDiffusionPipeline.from_pretrained(str(tiny_sd15_dir), safety_checker=None)
    pipe.load_lora_weights(str(masked_run.ckpt_dir / "checkpoint-000002"), weight_name=WEIGHTS)
    n_loaded = sum(1 for name, _ in pipe.unet.named_parameters() if ".lora_" in name)
    assert n_loaded == len(_weights(masked_run.ckpt_dir / "checkpoint-000002")) > 0


def test_sampling_does_not_change_the_trained_weights(masked_run, tiny_sd15_dir, faces_dataset, tmp_path):
    argv = _argv(tiny_sd15_dir, faces_dataset, tmp_path)
    argv[argv.index("--samples-every") + 1] = "0"
    run = run_inprocess(argv, tmp_path / "model", tmp_path / "ckpt")
    assert run.code == 0, run.stderr
    assert not any((tmp_path / "ckpt").glob("checkpoint-*/samples"))
    # Measured: bit for bit (CPU, fp32): samples use their own generators and restore the RNG state.
    assert _same(_weights(run.out_dir), _weights(masked_run.out_dir))
    # The checkpoints still carry the weights (no samples asked for).
    assert (tmp_path / "ckpt" / "checkpoint-000002" / WEIGHTS).is_file()


def test_resume_after_pruning_matches_the_straight_run(masked_run, tiny_sd15_dir, faces_dataset, tmp_path):
    argv = _argv(tiny_sd15_dir, faces_dataset, tmp_path, "--checkpoint-every", "1")
    argv[argv.index("--samples-every") + 1] = "2"
    first = run_inprocess(argv, tmp_path / "model", tmp_path / "ckpt", env={FAIL_AFTER_STEP_ENV: "3"})
    assert first.code == 1
    ck = tmp_path / "ckpt"
    # Checkpoints 1 and 2 pruned (keep 1), 3 has the resume state; 2 was sampled, 1 and 3 not.
    assert {p.name for p in (ck / "checkpoint-000001").iterdir()} == {"COMPLETE", WEIGHTS, "state.json"}
    assert not RESUME_FILES & {p.name for p in (ck / "checkpoint-000002").iterdir()}
    assert (ck / "checkpoint-000002" / "samples" / "samples.json").is_file()
    second = run_inprocess(argv, tmp_path / "model", tmp_path / "ckpt")
    assert second.code == 0, second.stderr
    assert second.phase("resume")["step"] == "3"
    assert _same(_weights(second.out_dir), _weights(masked_run.out_dir))
    _assert_contract_b(ck / "checkpoint-000004", 4)
    # Same samples as the straight run: rendering is deterministic and independent of resume.
    for f in ("sample-0.png", "samples.json"):
        assert (ck / "checkpoint-000004" / "samples" / f).read_bytes() == \
            (masked_run.ckpt_dir / "checkpoint-000004" / "samples" / f).read_bytes()


def test_mask_weight_one_trains_exactly_like_no_manifest_and_masks_change_training(
        masked_run, tiny_sd15_dir, faces_dataset, dataset_zip, tmp_path):
    off = run_inprocess(_argv(tiny_sd15_dir, faces_dataset, tmp_path / "off", "--mask-weight", "1.0",
                              "--samples-every", "0"), tmp_path / "off" / "model", tmp_path / "off" / "ckpt")
    none = run_inprocess(_argv(tiny_sd15_dir, dataset_zip, tmp_path / "none", "--samples-every", "0"),
                         tmp_path / "none" / "model", tmp_path / "none" / "ckpt")
    assert off.code == 0 and none.code == 0, off.stderr + none.stderr
    assert off.phase("masks")["masked"] == "0" and none.phase("masks")["masked"] == "0"
    assert _same(_weights(off.out_dir), _weights(none.out_dir))
    assert not _same(_weights(off.out_dir), _weights(masked_run.out_dir))


def test_sdxl_checkpoints_follow_contract_b(tiny_sdxl_dir, faces_dataset, tmp_path):
    argv = train_args(tiny_sdxl_dir, faces_dataset, tmp_path / "model", tmp_path / "ckpt", "--steps", "3",
                      "--checkpoint-every", "2", "--flip")
    run = run_inprocess(argv, tmp_path / "model", tmp_path / "ckpt")
    assert run.code == 0, run.stderr
    # Default --samples-every for 3 steps: every checkpoint interval; the last step always samples.
    assert run.phase("train")["samples_every"] == "2"
    for step in (2, 3):
        _assert_contract_b(tmp_path / "ckpt" / f"checkpoint-{step:06d}", step)
    assert run.phase("masks")["masked"] == "6"
    assert (tmp_path / "ckpt" / "checkpoint-000003" / WEIGHTS).read_bytes() == (run.out_dir / WEIGHTS).read_bytes()


def test_sampler_restores_train_mode_and_rng_and_stops_on_request(tiny_sd15_dir):
    from avatar_trainer.model import encode_prompts, load_components
    from avatar_trainer.samples import Sampler, sample_specs

    cpu = torch.device("cpu")
    comps = load_components(str(tiny_sd15_dir), "sd15", None, cpu, torch.float32, torch.float32)
    specs = sample_specs("sks", "woman")
    assert [s["prompt"] for s in specs][0] == "a close-up portrait photo of sks woman, looking at the camera, natural light"
    encoded = encode_prompts(comps, [s["prompt"] for s in specs] + [""], cpu)
    sampler = Sampler("sd15", specs, encoded[:-1], encoded[-1], comps.vae, comps.noise_scheduler.config, 64, 2, cpu, None)
    comps.unet.train()
    torch.manual_seed(5)
    before = torch.get_rng_state()
    images = sampler.render(comps.unet)
    assert comps.unet.training and torch.equal(torch.get_rng_state(), before)
    assert [im.size for im in images] == [(64, 64)] * 4
    assert images[0].tobytes() == sampler.render(comps.unet)[0].tobytes()  # fixed seeds: the same image
    assert images[0].tobytes() != images[1].tobytes()
    calls = []
    assert sampler.render(comps.unet, stop=lambda: calls.append(1) or len(calls) > 3) is None  # SIGTERM mid-way
    assert comps.unet.training and torch.equal(torch.get_rng_state(), before)


def test_sigterm_during_the_last_samples_is_finished_by_the_restart(tiny_sd15_dir, faces_dataset, tmp_path,
                                                                     monkeypatch):
    """The last step always ends with a sampled checkpoint, even when Spot stops the VM mid-render."""
    import os
    import signal

    from avatar_trainer.samples import Sampler

    original = Sampler.render

    def render_then_sigterm(self, unet, stop=lambda: False):
        os.kill(os.getpid(), signal.SIGTERM)  # the trainer's handler only sets its stop flag
        return original(self, unet, stop)

    argv = _argv(tiny_sd15_dir, faces_dataset, tmp_path)
    argv[argv.index("--steps") + 1] = "2"
    monkeypatch.setattr(Sampler, "render", render_then_sigterm)
    first = run_inprocess(argv, tmp_path / "model", tmp_path / "ckpt")
    assert first.code == 143, first.stderr
    assert "while rendering the samples of step 2" in first.stderr
    last = tmp_path / "ckpt" / "checkpoint-000002"
    assert (last / "COMPLETE").is_file() and not (last / "samples").exists()
    assert not (tmp_path / "model" / "avatar.json").exists()

    monkeypatch.setattr(Sampler, "render", original)
    second = run_inprocess(argv, tmp_path / "model", tmp_path / "ckpt")
    assert second.code == 0, second.stderr
    assert second.phase("resume")["step"] == "2" and second.step_lines() == []
    _assert_contract_b(last, 2)
    assert (last / WEIGHTS).read_bytes() == (tmp_path / "model" / WEIGHTS).read_bytes()
