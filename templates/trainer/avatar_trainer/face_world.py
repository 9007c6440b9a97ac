"""A procedurally drawn world of faces, with captions that name what is drawn.

The tiny face base (`avatar_trainer.tiny_faces`) learns to draw this world, and `avatar demo`
shows a person drawn from it. Pure PIL and `random`: no torch, deterministic for a seed.

A face has a face shape, a skin tone, eye colour, a hair colour and style, maybe glasses (frame
colour and shape), maybe a hat, an expression, a pose (facing forward, turned left/right, a tilt,
a position and size in the frame), a shirt and a background. Every attribute has a caption word;
a caption names a random subset of them ("a photo of a person with long teal hair, smiling, blue
background"), so the model also learns to draw a plausible face for what a prompt leaves out.

One rule makes the demo honest: **teal hair and red glasses never appear together** (teal hair
and red glasses each exist, with other partners). The demo subject has both, so a base that
draws them together for the trigger word has learned it from the subject's photos.

Colours are chosen so that the learning test can measure them: teal appears only in hair (no
teal backgrounds, shirts or hats), and bright red only in glasses (no red backgrounds, shirts or
hats; lips and ginger hair are duller or more orange).
"""

from __future__ import annotations

import math
import random
from dataclasses import dataclass, replace

SKIN = {
    "pale": (247, 222, 200),
    "light": (236, 196, 160),
    "tan": (208, 158, 110),
    "brown": (160, 108, 70),
    "dark": (100, 66, 44),
}
HAIR = {
    "black": (28, 24, 24),
    "brown": (104, 64, 36),
    "blonde": (232, 200, 110),
    "ginger": (196, 96, 36),
    "grey": (160, 160, 164),
    "teal": (20, 170, 160),
    "pink": (240, 120, 190),
    "purple": (120, 60, 170),
}
HAIR_STYLES = ("short", "long", "curly", "bald", "bun")
FACE_SHAPES = ("oval", "round", "long", "square")
EYES = {"brown": (90, 55, 30), "blue": (50, 110, 200), "green": (60, 140, 70)}
GLASSES = {
    "red": (228, 24, 36),
    "blue": (40, 80, 220),
    "gold": (210, 170, 40),
    "black": (20, 20, 24),
    "white": (240, 240, 240),
}
GLASSES_SHAPES = ("round", "square")
HATS = ("cap", "beanie")
HAT_COLOURS = {
    "yellow": (240, 200, 40),
    "green": (50, 150, 60),
    "orange": (240, 130, 30),
    "blue": (40, 70, 180),
    "black": (30, 30, 34),
}
BACKGROUNDS = {
    "blue": (80, 120, 220),
    "green": (90, 170, 90),
    "yellow": (236, 214, 90),
    "orange": (236, 150, 70),
    "purple": (150, 100, 190),
    "grey": (140, 140, 140),
    "white": (236, 236, 232),
    "pink": (240, 170, 196),
}
SHIRTS = {
    "white": (235, 235, 235),
    "black": (35, 35, 40),
    "blue": (50, 80, 170),
    "green": (60, 130, 70),
    "yellow": (230, 200, 60),
    "grey": (120, 120, 124),
}
EXPRESSIONS = ("smiling", "serious", "surprised")
POSES = ("facing forward", "turned left", "turned right")
LIPS = (150, 80, 80)

# Every word a caption uses: the tiny base's tokenizer gives each one its own token.
WORDS = sorted(
    {"a", "photo", "of", "person", "with", "and", "hair", "glasses", "skin", "eyes", "face", "wearing",
     "background", "shirt", "sks", "close", "up"}
    | set(SKIN) | set(HAIR) | set(HAIR_STYLES) | set(FACE_SHAPES) | set(EYES) | set(GLASSES)
    | set(GLASSES_SHAPES) | set(HATS) | set(HAT_COLOURS) | set(BACKGROUNDS) | set(SHIRTS)
    | set(EXPRESSIONS) | {w for p in POSES for w in p.split()}
)

# The demo subject: a combination this world never draws (teal hair with red glasses).
SUBJECT_FIXED = dict(face="round", skin="light", eyes="brown", hair="teal", hair_style="long",
                     glasses="red", glasses_shape="round", hat=None, hat_colour=None)


@dataclass(frozen=True)
class Face:
    face: str
    skin: str
    eyes: str
    hair: str
    hair_style: str
    glasses: str | None
    glasses_shape: str
    hat: str | None
    hat_colour: str | None
    expression: str
    pose: str
    background: str
    shirt: str
    # Not captioned: where the head is and how it sits (fractions of the image).
    x: float = 0.5
    y: float = 0.5
    scale: float = 1.0
    tilt: float = 0.0


def allowed(f: Face) -> bool:
    """The world's one rule: teal hair never comes with red glasses."""
    return not (f.hair == "teal" and f.glasses == "red")


def _placement(rng: random.Random) -> dict:
    return dict(x=0.5 + rng.uniform(-0.06, 0.06), y=0.47 + rng.uniform(-0.04, 0.04),
                scale=rng.uniform(0.85, 1.15), tilt=rng.uniform(-12, 12))


def random_face(rng: random.Random) -> Face:
    """A face of the world (never teal hair with red glasses)."""
    while True:
        glasses = rng.choice(list(GLASSES)) if rng.random() < 0.45 else None
        hat = rng.choice(HATS) if rng.random() < 0.2 else None
        f = Face(
            face=rng.choice(FACE_SHAPES), skin=rng.choice(list(SKIN)), eyes=rng.choice(list(EYES)),
            hair=rng.choice(list(HAIR)), hair_style=rng.choice(HAIR_STYLES),
            glasses=glasses, glasses_shape=rng.choice(GLASSES_SHAPES),
            hat=hat, hat_colour=rng.choice(list(HAT_COLOURS)) if hat else None,
            expression=rng.choice(EXPRESSIONS), pose=rng.choice(POSES),
            background=rng.choice(list(BACKGROUNDS)), shirt=rng.choice(list(SHIRTS)), **_placement(rng),
        )
        if allowed(f):
            return f


def subject_face(rng: random.Random) -> Face:
    """The demo subject in a random pose, expression, shirt and background."""
    return Face(**SUBJECT_FIXED, expression=rng.choice(EXPRESSIONS), pose=rng.choice(POSES),
                background=rng.choice(list(BACKGROUNDS)), shirt=rng.choice(list(SHIRTS)), **_placement(rng))


def caption(f: Face, rng: random.Random, keep: float = 0.6) -> str:
    """A caption naming a random subset of the face's attributes (each kept with p=`keep`)."""
    return caption_and_named(f, rng, keep)[0]


def caption_and_named(f: Face, rng: random.Random, keep: float = 0.6) -> tuple[str, dict]:
    """(caption, {attribute: value} of what the caption names). See `caption`."""
    def kept() -> bool:
        return rng.random() < keep

    named: dict = {}
    traits = []
    style, colour = kept(), kept()
    if f.hair_style == "bald":
        if style or colour:
            traits.append("bald")
            named["hair_style"] = "bald"
    elif style or colour:
        traits.append(" ".join(([f.hair_style] if style else []) + ([f.hair] if colour else [])) + " hair")
        if style:
            named["hair_style"] = f.hair_style
        if colour:
            named["hair"] = f.hair
    if f.glasses and kept():
        traits.append(f"{f.glasses} glasses")
        named["glasses"] = f.glasses
    if kept():
        traits.append(f"{f.skin} skin")
        named["skin"] = f.skin
    if rng.random() < keep / 2:
        traits.append(f"{f.eyes} eyes")
        named["eyes"] = f.eyes
    if rng.random() < keep / 2:
        traits.append(f"{f.face} face")
        named["face"] = f.face
    rng.shuffle(traits)
    subject = "a photo of a person" + (" with " + " and ".join(traits) if traits else "")
    extras = []
    if kept():
        extras.append(f.expression)
        named["expression"] = f.expression
    if kept():
        extras.append(f.pose)
        named["pose"] = f.pose
    if kept():
        extras.append(f"{f.background} background")
        named["background"] = f.background
    if f.hat and kept():
        extras.append(f"wearing a {f.hat_colour} {f.hat}")
        named["hat"] = f"{f.hat_colour} {f.hat}"
    if rng.random() < keep / 2:
        extras.append(f"{f.shirt} shirt")
        named["shirt"] = f.shirt
    if f.scale > 1.08 and rng.random() < keep / 2:
        extras.append("close up")
    rng.shuffle(extras)
    return ", ".join([subject, *extras]), named


# What a caption can name, per attribute (the text encoder's auxiliary targets in tiny_faces).
NAMEABLE = {
    "hair": tuple(HAIR), "hair_style": HAIR_STYLES, "glasses": tuple(GLASSES), "skin": tuple(SKIN),
    "eyes": tuple(EYES), "face": FACE_SHAPES, "expression": EXPRESSIONS, "pose": POSES,
    "background": tuple(BACKGROUNDS), "hat": tuple(f"{c} {h}" for c in HAT_COLOURS for h in HATS),
    "shirt": tuple(SHIRTS),
}


def _mix(c, other, t: float):
    return tuple(round(a + (b - a) * t) for a, b in zip(c, other))


def render(f: Face, size: int, rng: random.Random | None = None):
    """Draw `f` as an RGB PIL image of `size` x `size` px. `rng` adds background texture."""
    from PIL import Image, ImageDraw

    S = size
    bg = BACKGROUNDS[f.background]
    img = Image.new("RGB", (S, S), bg)
    d = ImageDraw.Draw(img)
    # Background: a soft vertical gradient and a few lighter blobs (varied, still one colour).
    for i in range(8):
        y0, y1 = S * i / 8, S * (i + 1) / 8
        d.rectangle([0, y0, S, y1], fill=_mix(bg, (255, 255, 255) if i < 4 else (0, 0, 0), abs(i - 3.5) * 0.03))
    if rng is not None:
        for _ in range(rng.randint(0, 3)):
            r = S * rng.uniform(0.05, 0.15)
            bx, by = S * rng.random(), S * rng.uniform(0, 0.6)
            d.ellipse([bx - r, by - r, bx + r, by + r], fill=_mix(bg, (255, 255, 255), rng.uniform(0.1, 0.25)))

    sc = f.scale
    cx, cy = S * f.x, S * f.y
    rx, ry = S * 0.23 * sc, S * 0.285 * sc  # a selfie: the head fills about half the frame
    if f.face == "round":
        rx, ry = rx * 1.1, ry * 0.92
    elif f.face == "long":
        rx, ry = rx * 0.9, ry * 1.08
    turn = {"facing forward": 0.0, "turned left": -1.0, "turned right": 1.0}[f.pose]
    dx = turn * rx * 0.22
    w = max(1, round(S * 0.016 * sc))  # line width: about 1 px at 64 px (glasses: 2)

    # Shoulders, neck (not tilted with the head).
    shirt = SHIRTS[f.shirt]
    d.ellipse([cx - rx * 2.3, cy + ry * 1.05, cx + rx * 2.3, cy + ry * 3.2], fill=shirt)
    d.rectangle([cx - rx * 0.35, cy + ry * 0.6, cx + rx * 0.35, cy + ry * 1.25], fill=_mix(SKIN[f.skin], (0, 0, 0), 0.12))

    # The head on its own layer, tilted as a whole.
    head = Image.new("RGBA", (S, S), (0, 0, 0, 0))
    h = ImageDraw.Draw(head)
    skin, hair = SKIN[f.skin], HAIR[f.hair]
    if f.hair_style == "long":
        h.rounded_rectangle([cx - rx * 1.22 + dx * 0.3, cy - ry * 1.08, cx + rx * 1.22 + dx * 0.3, cy + ry * 1.15],
                            radius=rx * 0.8, fill=hair)
    # Ears (the far one hidden when turned).
    for side in (-1, 1):
        if turn * side > 0:
            continue
        ex = cx + side * rx * 0.98 + dx * 0.2
        h.ellipse([ex - rx * 0.16, cy - ry * 0.2, ex + rx * 0.16, cy + ry * 0.2], fill=_mix(skin, (0, 0, 0), 0.08))
    box = [cx - rx, cy - ry, cx + rx, cy + ry]
    if f.face == "square":
        h.rounded_rectangle(box, radius=rx * 0.45, fill=skin)
    else:
        h.ellipse(box, fill=skin)
    # Hair on top of the head.
    if f.hair_style in ("short", "long", "bun"):
        h.chord([cx - rx * 1.06 + dx * 0.3, cy - ry * 1.12, cx + rx * 1.06 + dx * 0.3, cy + ry * 0.3], 180, 360, fill=hair)
    elif f.hair_style == "curly":
        for k in range(11):
            a = math.pi * (1.05 + 0.9 * k / 10)
            px, py = cx + dx * 0.3 + math.cos(a) * rx * 0.98, cy - ry * 0.3 + math.sin(a) * ry * 0.78
            r = rx * 0.34
            h.ellipse([px - r, py - r, px + r, py + r], fill=hair)
    if f.hair_style == "bun":
        r = rx * 0.38
        h.ellipse([cx - r + dx * 0.3, cy - ry * 1.05 - r * 1.4, cx + r + dx * 0.3, cy - ry * 1.05 + r * 0.6], fill=hair)
    # Eyebrows, eyes.
    brow = hair if f.hair_style != "bald" else (70, 50, 40)
    ey = cy - ry * 0.1
    for side in (-1, 1):
        ex = cx + side * rx * 0.4 + dx
        er = rx * 0.15
        h.line([ex - er * 1.2, ey - er * 1.7, ex + er * 1.2, ey - er * 1.9], fill=brow, width=w)
        h.ellipse([ex - er, ey - er * 0.7, ex + er, ey + er * 0.7], fill=(250, 250, 250))
        ir = er * 0.62
        h.ellipse([ex - ir + dx * 0.15, ey - ir, ex + ir + dx * 0.15, ey + ir], fill=EYES[f.eyes])
    # Nose, mouth.
    h.line([cx + dx * 1.2, ey + ry * 0.1, cx + dx * 1.4 + rx * 0.05, ey + ry * 0.35], fill=_mix(skin, (0, 0, 0), 0.3), width=w)
    my, mw = cy + ry * 0.5, rx * 0.36
    if f.expression == "smiling":
        h.chord([cx - mw + dx, my - ry * 0.14, cx + mw + dx, my + ry * 0.16], 0, 180, fill=LIPS)
    elif f.expression == "surprised":
        h.ellipse([cx - mw * 0.4 + dx, my - ry * 0.08, cx + mw * 0.4 + dx, my + ry * 0.16], fill=(90, 40, 40))
    else:
        h.line([cx - mw * 0.8 + dx, my + ry * 0.02, cx + mw * 0.8 + dx, my + ry * 0.02], fill=LIPS, width=w)
    # Glasses: thick frames over the eyes and a bridge.
    if f.glasses:
        g = GLASSES[f.glasses]
        gr = rx * 0.27
        for side in (-1, 1):
            gx = cx + side * rx * 0.4 + dx
            rect = [gx - gr, ey - gr * 0.85, gx + gr, ey + gr * 0.85]
            if f.glasses_shape == "round":
                h.ellipse(rect, outline=g, width=2 * w)
            else:
                h.rounded_rectangle(rect, radius=gr * 0.2, outline=g, width=2 * w)
        h.line([cx - rx * 0.4 + dx + gr, ey, cx + rx * 0.4 + dx - gr, ey], fill=g, width=2 * w)
    # Hats.
    if f.hat:
        c = HAT_COLOURS[f.hat_colour]
        if f.hat == "cap":
            h.chord([cx - rx * 1.08 + dx * 0.3, cy - ry * 1.25, cx + rx * 1.08 + dx * 0.3, cy - ry * 0.1], 180, 360, fill=c)
            bx = cx + dx * 2.5 + turn * rx * 0.4
            h.ellipse([bx - rx * 0.9, cy - ry * 0.75, bx + rx * 0.9, cy - ry * 0.5], fill=_mix(c, (0, 0, 0), 0.2))
        else:
            h.chord([cx - rx * 1.1 + dx * 0.3, cy - ry * 1.3, cx + rx * 1.1 + dx * 0.3, cy + ry * 0.05], 180, 360, fill=c)
            h.rectangle([cx - rx * 1.1 + dx * 0.3, cy - ry * 0.72, cx + rx * 1.1 + dx * 0.3, cy - ry * 0.5],
                        fill=_mix(c, (255, 255, 255), 0.25))
    if f.tilt:
        head = head.rotate(f.tilt, resample=Image.BICUBIC, center=(cx, cy))
    img.paste(head, (0, 0), head)
    return img


def training_image(f: Face, size: int, rng: random.Random, supersample: int = 4):
    """`f` drawn at `supersample` times `size` and box-filtered down: what the base trains on."""
    from PIL import Image

    big = render(f, size * supersample, rng)
    return big.reduce(supersample) if supersample > 1 else big


def sample(seed: int, n: int, size: int = 64) -> list[tuple[object, str, Face]]:
    """`n` (image, caption, face) triples of the world, deterministic for `seed`."""
    rng = random.Random(seed)
    out = []
    for _ in range(n):
        f = random_face(rng)
        out.append((training_image(f, size, rng), caption(f, rng), f))
    return out


def subject_photos(seed: int, n: int, size: int = 512) -> list[tuple[object, Face]]:
    """`n` photos of the demo subject (varied pose, expression, shirt, background) at `size` px."""
    rng = random.Random(seed * 7919 + 1)
    photos = []
    backgrounds = list(BACKGROUNDS)
    rng.shuffle(backgrounds)
    for i in range(n):
        f = replace(subject_face(rng), background=backgrounds[i % len(backgrounds)])
        photos.append((render(f, size, rng), f))
    return photos
