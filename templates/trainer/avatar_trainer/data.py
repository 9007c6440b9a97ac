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


@dataclass
class SourceImage:
    name: str  # entry name inside the zip, used as the caption key
    image: "object"  # PIL.Image.Image, RGB, EXIF orientation applied
    original_size: tuple[int, int]  # (height, width) before crop/resize: SDXL conditions on it


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
    an entry that is not an image, an image that does not decode, too many/too large images.
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
    with zf:
        entries = sorted((i for i in zf.infolist() if not _is_junk(i.filename)), key=lambda i: i.filename)
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
    return images


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


def center_crop_resize(img, resolution: int, original_size: tuple[int, int], flip: bool = False) -> Prepared:
    """Resize the short side to `resolution`, center-crop a square; optionally mirror.

    Recording the crop offset (mirrored with the image) is what SDXL's size/crop conditioning
    wants: at inference it is asked for crop (0, 0), i.e. a well-framed picture.
    """
    from PIL import Image, ImageOps

    w, h = img.size
    scale = resolution / min(w, h)
    new_w, new_h = max(resolution, round(w * scale)), max(resolution, round(h * scale))
    resized = img.resize((new_w, new_h), Image.Resampling.LANCZOS)
    top = (new_h - resolution) // 2
    left = (new_w - resolution) // 2
    crop = resized.crop((left, top, left + resolution, top + resolution))
    if flip:
        crop = ImageOps.mirror(crop)
        left = new_w - left - resolution
    return Prepared(image=crop, original_size=original_size, crop_top_left=(top, left))
