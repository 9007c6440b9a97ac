"""Captions: the trigger phrase replaces BLIP's generic subject; the BLIP path runs offline."""

from __future__ import annotations

import json

import pytest

from avatar_trainer.captions import apply_trigger

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
    assert run.phase("captions") == {"phase": "captions", "model": str(tiny_blip_dir), "count": "6"}
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
