"""The dataset: a zip of images (as written by `avatar prepare`), validated before any GPU work.

Validation happens before torch is imported, so a bad archive fails in a second with a message
that names the problem, not minutes later inside the training loop.
"""

from __future__ import annotations

import hashlib
import io
import re
import zipfile
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from .errors import TrainerError

IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".webp", ".bmp"}
# Per-entry limits: a selfie set never needs more, and they stop zip/decompression bombs.
MAX_ENTRY_BYTES = 64 * 1024 * 1024
MAX_IMAGE_PIXELS = 50_000_000
MAX_IMAGES = 1000
# The face manifest `avatar prepare` writes beside the images (Contract A, design: issue 12):
# {"schema": 1, "images": {"0001.jpg": {"width": W, "height": H, "box": [x0, y0, x1, y1]}, …}}
# with the face box in integer pixels of that stored image. Images without an entry (or a dataset
# without the file) train unmasked.
FACES_MANIFEST = "faces.json"


@dataclass
class SourceImage:
    name: str  # entry name inside the zip, used as the caption key
    image: "object"  # PIL.Image.Image, RGB, EXIF orientation applied
    original_size: tuple[int, int]  # (height, width) before crop/resize: SDXL conditions on it
    face_box: tuple[float, float, float, float] | None = None  # (x0, y0, x1, y1) in this image's pixels


def _is_junk(name: str) -> bool:
    """Archive-tool metadata that is safe to ignore (macOS resource forks, Finder files)."""
    p = PurePosixPath(name)
    return (
        name.endswith("/")
        or p.parts[:1] == ("__MACOSX",)
        or p.name.startswith("._")
        or p.name in {".DS_Store", "Thumbs.db", "desktop.ini"}
    )


def load_zip(path: Path) -> list[SourceImage]:
    """Open and validate the dataset zip; return decoded RGB images in entry-name order.

    Errors (all TrainerError): missing file, not a zip / corrupt archive, no entries,
    an entry that is not an image, an image that does not decode, too many/too large images,
    a `faces.json` that is not the face manifest. Face boxes from it land on `SourceImage.face_box`.
    """
    from PIL import Image, ImageOps

    if not path.is_file():
        raise TrainerError(f"dataset not found: {path}")
    if not zipfile.is_zipfile(path):
        raise TrainerError(f"dataset {path} is not a zip archive (or it is corrupt)")
    try:
        zf = zipfile.ZipFile(path)
    except (zipfile.BadZipFile, OSError) as e:
        raise TrainerError(f"dataset {path} is a corrupt zip archive: {e}") from None

    Image.MAX_IMAGE_PIXELS = MAX_IMAGE_PIXELS  # PIL raises DecompressionBombError above 2x this
    images: list[SourceImage] = []
    manifest = None
    with zf:
        entries = sorted((i for i in zf.infolist() if not _is_junk(i.filename)), key=lambda i: i.filename)
        for info in [i for i in entries if i.filename == FACES_MANIFEST]:
            entries.remove(info)
            if info.file_size > MAX_ENTRY_BYTES:
                raise TrainerError(f"dataset entry {FACES_MANIFEST!r} is too large ({info.file_size} bytes)")
            try:
                manifest = zf.read(info)
            except (zipfile.BadZipFile, OSError, EOFError, NotImplementedError) as e:
                raise TrainerError(f"dataset {path} is corrupt: cannot read {FACES_MANIFEST!r}: {e}") from None
        if not entries:
            raise TrainerError(f"dataset {path} is empty: the zip has no image files")
        if len(entries) > MAX_IMAGES:
            raise TrainerError(f"dataset {path} has {len(entries)} files; at most {MAX_IMAGES} are supported")
        for info in entries:
            name = info.filename
            if PurePosixPath(name).suffix.lower() not in IMAGE_SUFFIXES:
                raise TrainerError(
                    f"dataset entry {name!r} is not an image (expected {', '.join(sorted(IMAGE_SUFFIXES))}); "
                    "build the dataset with `avatar prepare`"
                )
            if info.file_size > MAX_ENTRY_BYTES:
                raise TrainerError(f"dataset entry {name!r} is too large ({info.file_size} bytes)")
            try:
                raw = zf.read(info)  # checks the CRC: a damaged archive fails here
            except (zipfile.BadZipFile, OSError, EOFError, NotImplementedError) as e:
                raise TrainerError(f"dataset {path} is corrupt: cannot read {name!r}: {e}") from None
            try:
                with Image.open(io.BytesIO(raw)) as im:
                    im.load()
                    im = ImageOps.exif_transpose(im)
                    rgb = im.convert("RGB")
            except Image.DecompressionBombError:
                raise TrainerError(f"dataset entry {name!r} has too many pixels") from None
            except Exception as e:  # PIL raises a zoo of types for undecodable data
                raise TrainerError(f"dataset entry {name!r} is not a readable image: {e}") from None
            images.append(SourceImage(name=name, image=rgb, original_size=(rgb.height, rgb.width)))
    if manifest is not None:
        boxes = parse_face_manifest(manifest, {s.name: s.image.size for s in images})
        for s in images:
            s.face_box = boxes.get(s.name)
    return images


def parse_face_manifest(raw: bytes, sizes: dict[str, tuple[int, int]]) -> dict[str, tuple[float, float, float, float]]:
    """Face boxes by image name from `faces.json`, in the pixels of each decoded image.

    `sizes` maps entry names to (width, height) as decoded. A manifest written for another size of
    the same image (width/height differ) is scaled to it; a box outside its image, an entry naming
    no image of the zip, or a malformed file is an error: prepare wrote it, so it is a broken dataset.
    """
    import json

    def bad(why: str) -> TrainerError:
        return TrainerError(f"dataset entry {FACES_MANIFEST!r} {why}; rebuild the dataset with `avatar prepare`")

    try:
        doc = json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, ValueError) as e:
        raise bad(f"is not valid JSON ({e})") from None
    if not isinstance(doc, dict) or doc.get("schema") != 1 or not isinstance(doc.get("images"), dict):
        raise bad('is not a face manifest ({"schema": 1, "images": {…}})')
    boxes = {}
    for name, entry in doc["images"].items():
        if name not in sizes:
            raise bad(f"names {name!r}, which is not an image of the dataset")
        try:
            w, h = int(entry["width"]), int(entry["height"])
            x0, y0, x1, y1 = (float(v) for v in entry["box"])
        except (TypeError, KeyError, ValueError):
            raise bad(f"has a malformed entry for {name!r} (expected width, height and box [x0, y0, x1, y1])") from None
        if w <= 0 or h <= 0 or not (0 <= x0 < x1 <= w and 0 <= y0 < y1 <= h):
            raise bad(f"has a face box {entry['box']} outside the {w}x{h} image {name!r}")
        real_w, real_h = sizes[name]
        sx, sy = real_w / w, real_h / h
        boxes[name] = (x0 * sx, y0 * sy, x1 * sx, y1 * sy)
    return boxes


def sha256_hint(path: Path) -> str:
    """The dataset's sha256 when --dataset-sha256 is not given.

    `avatar` names uploaded datasets `<sha256>.zip`, so a 64-hex file stem is that hash;
    otherwise hash the archive bytes.
    """
    if re.fullmatch(r"[0-9a-f]{64}", path.stem):
        return path.stem
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


@dataclass
class Prepared:
    """One training view of an image: square crop at the training resolution."""

    image: "object"  # PIL RGB, resolution x resolution
    original_size: tuple[int, int]  # (h, w) of the source image
    crop_top_left: tuple[int, int]  # (top, left) in the resized image, as SDXL expects
    face_box: tuple[float, float, float, float] | None = None  # the face in crop pixels (mirrored with it)


def center_crop_resize(img, resolution: int, original_size: tuple[int, int], flip: bool = False,
                       face_box: tuple[float, float, float, float] | None = None) -> Prepared:
    """Resize the short side to `resolution`, center-crop a square; optionally mirror.

    Recording the crop offset (mirrored with the image) is what SDXL's size/crop conditioning
    wants: at inference it is asked for crop (0, 0), i.e. a well-framed picture. `face_box` (in
    `img` pixels) goes through exactly the same resize, crop and mirror, so the loss mask built
    from it covers the face in the crop.
    """
    from PIL import Image, ImageOps

    w, h = img.size
    scale = resolution / min(w, h)
    new_w, new_h = max(resolution, round(w * scale)), max(resolution, round(h * scale))
    resized = img.resize((new_w, new_h), Image.Resampling.LANCZOS)
    top = (new_h - resolution) // 2
    left = (new_w - resolution) // 2
    crop = resized.crop((left, top, left + resolution, top + resolution))
    box = None
    if face_box is not None:
        x0, y0, x1, y1 = face_box
        # Pixel edges scale by the per-axis resize factor (the rounding above makes them differ slightly).
        fx, fy = new_w / w, new_h / h
        box = (x0 * fx - left, y0 * fy - top, x1 * fx - left, y1 * fy - top)
    if flip:
        crop = ImageOps.mirror(crop)
        left = new_w - left - resolution
        if box is not None:
            box = (resolution - box[2], box[1], resolution - box[0], box[3])
    return Prepared(image=crop, original_size=original_size, crop_top_left=(top, left), face_box=box)
