"""Captions: one fixed instance prompt, or BLIP captions carrying the trigger phrase.

With `blip`, each image is described ("a woman in a red shirt standing in a park") and the
generic subject is replaced by the trigger phrase ("a photo of sks woman in a red shirt …").
Keeping the variable things (clothes, background, light) in the caption stops the trigger
token from absorbing them; the token then has to explain only what is constant: the face.
"""

from __future__ import annotations

import json
import os
import re
from pathlib import Path

DEFAULT_CAPTION_MODEL = "Salesforce/blip-image-captioning-large"
# BLIP's captions, kept beside the checkpoints: a restarted job (Spot preemption) reuses them
# instead of downloading and running BLIP again.
CACHE_NAME = "captions.json"

# Singular nouns BLIP uses for one person; plural ("people", "women") means several, left alone.
SUBJECT_NOUNS = (
    "person", "man", "woman", "boy", "girl", "guy", "lady", "gentleman", "child", "kid",
    "baby", "teenager", "teen", "toddler", "adult", "student", "male", "female",
)
# Adjectives allowed between the article and the subject noun ("a young smiling woman").
# Articles and prepositions are excluded so "a photo of a man" does not read "photo of a" as adjectives.
_STOP = r"(?:a|an|the|one|of|with|in|on|at|and|or|to|by|from|near|next|behind|holding|wearing)\b"
_ADJ = rf"(?:(?!{_STOP})[a-z]+(?:-[a-z]+)?\s+){{0,3}}?"
# BLIP-large's well-known filler tokens ("arafed woman …"): meaningless, dropped.
_BLIP_NOISE = re.compile(r"\b(?:araf+ed|arafe|araffe|arafy|arrafed|there is|there are)\b\s*")


def instance_prompt(token: str, class_word: str) -> str:
    return f"a photo of {token} {class_word}"


def class_prompt(class_word: str) -> str:
    return f"a photo of {class_word}"


def apply_trigger(caption: str, token: str, class_word: str) -> str:
    """Put the trigger phrase "{token} {class_word}" in place of the caption's subject.

    "a woman sitting on a bench"      → "a photo of sks woman sitting on a bench" (class_word=woman)
    "a close up of a man with a beard" → "a close up of sks man with a beard" (class_word=man)
    "a red brick wall"                → "a photo of sks person, a red brick wall" (no subject found)
    """
    trigger = f"{token} {class_word}"
    text = _BLIP_NOISE.sub("", caption.strip().lower())
    text = re.sub(r"\s+", " ", text).strip(" ,.")
    if not text:
        return instance_prompt(token, class_word)
    if re.search(rf"\b{re.escape(token.lower())}\b", text):
        return text  # already carries the token
    nouns = sorted({*SUBJECT_NOUNS, class_word.lower()}, key=len, reverse=True)
    pattern = re.compile(
        # The article may be missing only at the very start ("young woman smiling at the camera").
        rf"(?:^(?:(?:a|an|the|one)\s+)?|\b(?:a|an|the|one)\s+)"
        rf"(?P<adj>{_ADJ})(?P<noun>{'|'.join(map(re.escape, nouns))})\b"
    )
    m = pattern.search(text)
    if not m:
        return f"{instance_prompt(token, class_word)}, {text}"
    lead = "a photo of " if m.start() == 0 else ""
    replacement = f"{lead}{m.group('adj')}{trigger}"
    return text[: m.start()] + replacement + text[m.end():]


def blip_captions(images, model_id: str, device, dtype, max_new_tokens: int = 40) -> list[str]:
    """Caption PIL images with BLIP (unconditional captioning, beam search: deterministic)."""
    import torch
    from transformers import BlipForConditionalGeneration, BlipProcessor

    processor = BlipProcessor.from_pretrained(model_id)
    model = BlipForConditionalGeneration.from_pretrained(model_id, torch_dtype=dtype).to(device).eval()
    out: list[str] = []
    with torch.no_grad():
        for img in images:
            inputs = processor(images=img, return_tensors="pt").to(device)
            inputs["pixel_values"] = inputs["pixel_values"].to(dtype)
            ids = model.generate(**inputs, num_beams=3, max_new_tokens=max_new_tokens, min_new_tokens=3)
            out.append(processor.decode(ids[0], skip_special_tokens=True).strip())
    del model
    return out


def cached_captions(path: Path, key: dict, names: list[str]) -> list[str] | None:
    """The raw captions saved by `save_captions` for the same key (caption model, dataset, resolution)
    and the same image names, in `names` order; None when there are none or they are another run's."""
    try:
        saved = json.loads(Path(path).read_text(encoding="utf-8"))
        raw = saved["raw"]
        if saved.get("key") != key or sorted(raw) != sorted(names):
            return None
        return [str(raw[n]) for n in names]
    except (OSError, ValueError, KeyError, TypeError):
        return None


def save_captions(path: Path, key: dict, names: list[str], raw: list[str]) -> None:
    """Write the raw captions atomically (temp file + rename, also on Cloud Storage FUSE)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    tmp.write_text(json.dumps({"key": key, "raw": dict(zip(names, raw))}, indent=2, ensure_ascii=False) + "\n",
                   encoding="utf-8")
    os.replace(tmp, path)
