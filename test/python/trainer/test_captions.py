"""Captions: the trigger phrase replaces BLIP's generic subject; the BLIP path runs offline."""

from __future__ import annotations

import json
import shutil

import pytest

from avatar_trainer.captions import apply_trigger
from avatar_trainer.train import FAIL_AFTER_STEP_ENV

from .conftest import run_inprocess, train_args


@pytest.mark.parametrize("caption, class_word, expected", [
    ("a woman sitting on a bench", "woman", "a photo of sks woman sitting on a bench"),
    ("a woman sitting on a bench", "person", "a photo of sks person sitting on a bench"),
    ("a photo of a man", "man", "a photo of sks man"),
    ("a close up of a man with a beard", "man", "a close up of sks man with a beard"),
    ("arafed woman in a red shirt standing in a park", "woman",
     "a photo of sks woman in a red shirt standing in a park"),
    ("there is a young smiling girl wearing glasses", "girl", "a photo of young smiling sks girl wearing glasses"),
    ("A Man.", "person", "a photo of sks person"),
    ("a red brick wall", "person", "a photo of sks person, a red brick wall"),
    ("two women talking", "person", "a photo of sks person, two women talking"),
    ("a womanizer", "person", "a photo of sks person, a womanizer"),  # not the noun "woman"
    ("", "person", "a photo of sks person"),
    ("sks person at the beach", "person", "sks person at the beach"),
])
def test_apply_trigger(caption, class_word, expected):
    assert apply_trigger(caption, "sks", class_word) == expected


def test_trigger_phrase_always_present():
    for caption in ["a dog on a couch", "people at a party", "a man and a woman", "portrait of a lady"]:
        assert "zwx person" in apply_trigger(caption, "zwx", "person")


def test_blip_captions_with_tiny_offline_blip(tiny_sd15_dir, tiny_blip_dir, dataset_zip, tmp_path):
    out, ck = tmp_path / "model", tmp_path / "ckpt"
    run = run_inprocess(train_args(tiny_sd15_dir, dataset_zip, out, ck, "--steps", "2", "--caption", "blip",
                                   "--caption-model", str(tiny_blip_dir)), out, ck)
    assert run.code == 0, run.stderr
    assert run.phase("data")["captions"] == "blip"
    assert run.phase("captions") == {"phase": "captions", "model": str(tiny_blip_dir), "count": "6",
                                     "reused": "false"}
    captions = json.loads((out / "captions.json").read_text())
    assert sorted(captions) == [f"img_{i:03d}.jpg" for i in range(6)]
    for text in captions.values():
        assert "sks person" in text
        # BLIP produced words beyond the bare instance prompt (nonsense words, from a random model).
        assert len(text.split()) > len("a photo of sks person".split()), text
    meta = json.loads((out / "avatar.json").read_text())
    assert meta["captions"] == "blip"
    assert meta["instance_prompt"] == "a photo of sks person"  # what users prompt with


def test_missing_caption_model_is_a_clear_error(tiny_sd15_dir, dataset_zip, tmp_path):
    out, ck = tmp_path / "model", tmp_path / "ckpt"
    run = run_inprocess(train_args(tiny_sd15_dir, dataset_zip, out, ck, "--steps", "1", "--caption", "blip",
                                   "--caption-model", str(tmp_path / "no-such-blip")), out, ck)
    assert run.code == 1
    assert run.stderr.startswith("error: ") and "no-such-blip" in run.stderr


def test_blip_captions_are_kept_with_the_checkpoints_and_reused_on_resume(tiny_sd15_dir, tiny_blip_dir,
                                                                          dataset_zip, tmp_path):
    """A preempted job restarts without running (or even finding) BLIP again: same prompts as before."""
    blip = tmp_path / "blip"
    shutil.copytree(tiny_blip_dir, blip)
    out, ck = tmp_path / "model", tmp_path / "ckpt"
    argv = train_args(tiny_sd15_dir, dataset_zip, out, ck, "--steps", "4", "--caption", "blip",
                      "--caption-model", str(blip))
    first = run_inprocess(argv, out, ck, env={FAIL_AFTER_STEP_ENV: "2"})
    assert first.code == 1 and first.phase("captions")["reused"] == "false"
    saved = json.loads((ck / "captions.json").read_text())
    assert sorted(saved["raw"]) == [f"img_{i:03d}.jpg" for i in range(6)]

    shutil.rmtree(blip)  # the caption model is gone: only the kept captions can serve the restart
    second = run_inprocess(argv, out, ck)
    assert second.code == 0, second.stderr
    assert second.phase("captions")["reused"] == "true"
    assert second.phase("resume")["step"] == "2"
    captions = json.loads((out / "captions.json").read_text())
    assert captions == {name: apply_trigger(raw, "sks", "person") for name, raw in saved["raw"].items()}


def test_kept_captions_of_another_caption_model_are_not_reused(tiny_sd15_dir, tiny_blip_dir, dataset_zip, tmp_path):
    from avatar_trainer.captions import cached_captions

    out, ck = tmp_path / "model", tmp_path / "ckpt"
    run = run_inprocess(train_args(tiny_sd15_dir, dataset_zip, out, ck, "--steps", "1", "--caption", "blip",
                                   "--caption-model", str(tiny_blip_dir)), out, ck)
    assert run.code == 0, run.stderr
    key = json.loads((ck / "captions.json").read_text())["key"]
    names = [f"img_{i:03d}.jpg" for i in range(6)]
    assert cached_captions(ck / "captions.json", key, names) is not None
    assert cached_captions(ck / "captions.json", {**key, "caption_model": "other/blip"}, names) is None
    assert cached_captions(ck / "captions.json", key, names[:5]) is None  # another dataset's images
