"""Decode one image file into a uint8 C×H×W array of a fixed size and channel count.

Kept free of torch so that decoding worker processes start fast.
"""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import IO, Literal

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

# (a GIF is read as its first frame, as inference and the served model read it)
IMAGE_SUFFIXES = frozenset({".png", ".jpg", ".jpeg", ".jpe", ".jfif", ".bmp", ".webp",
                            ".tif", ".tiff", ".gif"})
# Pillow's own decompression-bomb threshold (it refuses twice this outright): the default
# of ``ingest.max_pixels``, the largest image (width × height) ingest, inference and
# serving decode.
MAX_PIXELS = Image.MAX_IMAGE_PIXELS
# What Pillow refuses outright whatever the caller allows: the most ingest.max_pixels may be.
PILLOW_LIMIT = 2 * Image.MAX_IMAGE_PIXELS
_ORIENTATION = 0x0112  # the EXIF tag
Resize = Literal["center_crop", "stretch"]

# Transparent pixels become black: the same value whatever colour the file
# happened to store under alpha = 0.
_BACKGROUND = (0, 0, 0, 255)
# 16-bit modes to 8 bits (65535 → 255). Mode "I" (32-bit integers: 16-bit TIFFs and, in
# older Pillow, 16-bit PNGs) is taken as 16-bit too: one scale for every file, so that a
# dark image is not brightened because its own maximum is small.
_HIGH_BIT_DEPTH = {"I;16": 257.0, "I;16B": 257.0, "I;16L": 257.0, "I;16N": 257.0,
                   "I": 257.0}


# Files that are never images, whatever folder they sit in (what operating systems and
# people leave next to photos): left out of a folder's images with a log line instead of
# failing as bad images. An image format that cannot be read is still a bad image.
_NOT_IMAGES = frozenset({"thumbs.db", "ehthumbs.db", "desktop.ini"})
_NOT_IMAGE_SUFFIXES = frozenset({".txt", ".md", ".rst", ".json", ".csv", ".tsv", ".xml",
                                 ".yml", ".yaml", ".ini", ".db", ".log", ".html", ".pdf",
                                 ".zip", ".py", ".sh", ".lnk", ".url"})


def never_an_image(path: Path) -> bool:
    """Whether ``path`` names a file that is never an image (by its name alone)."""
    return path.name.lower() in _NOT_IMAGES or path.suffix.lower() in _NOT_IMAGE_SUFFIXES


class ImageDecodeError(Exception):
    """The file is not a readable image (its reason is the message)."""


def decode_file(path: str | Path | IO[bytes], size_hw: tuple[int, int], channels: int,
                resize: Resize = "center_crop", *, max_pixels: int = MAX_PIXELS) -> np.ndarray:
    """Read ``path`` (a file name or an open binary file) and return it as uint8
    ``channels``×H×W, upright as a viewer shows it (its EXIF orientation applied: phone
    and camera photos are often stored sideways with a tag saying so).

    Raises:
        ImageDecodeError: the file is truncated, corrupt, not an image, or larger than
            ``max_pixels`` (checked from its header, before anything is decoded).
    """
    try:
        with warnings.catch_warnings():
            # a bomb warning is this function's own error below, not a stray warning
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            image = Image.open(path)
        with image:
            check_pixels(*image.size, max_pixels)
            if image.format == "JPEG":
                # Let libjpeg decode at 1/2, 1/4 or 1/8 scale when the target is small:
                # much faster for large photos, lossless for already small ones.
                image.draft("L" if channels == 1 else "RGB", (size_hw[1], size_hw[0]))
            image.load()
            if image.getexif().get(_ORIENTATION, 1) != 1:
                image = ImageOps.exif_transpose(image)
            return to_array(image, size_hw, channels, resize)
    except UnidentifiedImageError:
        raise ImageDecodeError("not an image PIL can read") from None
    except Image.DecompressionBombError:  # Pillow's own check, before the header is ours
        raise ImageDecodeError(
            f"more than {PILLOW_LIMIT:,} pixels, which Pillow refuses to decode as a "
            "possible decompression bomb whatever ingest.max_pixels says: resize the "
            "image") from None
    except (OSError, SyntaxError, ValueError) as exc:
        raise ImageDecodeError(str(exc) or type(exc).__name__) from None


def check_pixels(width: int, height: int, max_pixels: int) -> None:
    """Refuse an image of more than ``max_pixels`` pixels (a decompression bomb: a small
    file that decodes to gigabytes)."""
    if width * height > max_pixels:
        raise ImageDecodeError(
            f"{width}×{height} = {width * height:,} pixels, more than the limit of "
            f"{max_pixels:,} (ingest.max_pixels): resize the image or raise the limit")


def to_array(image: Image.Image, size_hw: tuple[int, int], channels: int,
             resize: Resize = "center_crop") -> np.ndarray:
    """Convert a loaded PIL image (any mode) to uint8 ``channels``×H×W."""
    image = _to_8bit(image)
    image = image.convert("L" if channels == 1 else "RGB")
    height, width = size_hw
    if image.size != (width, height):
        if resize == "center_crop":
            image = ImageOps.fit(image, (width, height), Image.Resampling.BILINEAR)
        else:
            image = image.resize((width, height), Image.Resampling.BILINEAR)
    array = np.asarray(image, dtype=np.uint8)
    return array[None] if array.ndim == 2 else array.transpose(2, 0, 1)


def _to_8bit(image: Image.Image) -> Image.Image:
    """Flatten transparency onto black and bring 16-bit/float images to 8 bits."""
    if image.mode == "P":
        image = image.convert("RGBA" if "transparency" in image.info else "RGB")
    if image.mode in ("RGBA", "LA", "PA") or "transparency" in image.info:
        rgba = image.convert("RGBA")
        background = Image.new("RGBA", rgba.size, _BACKGROUND)
        return Image.alpha_composite(background, rgba).convert("RGB")
    if image.mode in _HIGH_BIT_DEPTH:
        values = np.asarray(image, dtype=np.float32) / _HIGH_BIT_DEPTH[image.mode]
        return Image.fromarray(np.clip(values, 0, 255).round().astype(np.uint8))
    if image.mode == "F":  # floating point has no fixed range: 0–1, 0–255 or 16-bit
        values = np.nan_to_num(np.asarray(image, dtype=np.float32))
        top = float(values.max(initial=0))
        values = values * 255 if top <= 1 else values / 257 if top > 255 else values
        return Image.fromarray(np.clip(values, 0, 255).round().astype(np.uint8))
    return image


def decode_files(paths: list[str], size_hw: tuple[int, int], channels: int,
                 resize: Resize, max_pixels: int = MAX_PIXELS
                 ) -> tuple[np.ndarray, dict[int, str]]:
    """Decode many files into one uint8 N×C×H×W array; failures as {index: reason}.

    Runs in decoding worker processes, which import this module alone.
    """
    out = np.zeros((len(paths), channels, *size_hw), dtype=np.uint8)
    errors: dict[int, str] = {}
    for i, path in enumerate(paths):
        if Path(path).suffix.lower() not in IMAGE_SUFFIXES:
            errors[i] = (f"not an image format ingest reads (expected "
                         f"{', '.join(sorted(IMAGE_SUFFIXES))}): convert it or leave it out")
            continue
        try:
            out[i] = decode_file(path, size_hw, channels, resize, max_pixels=max_pixels)
        except ImageDecodeError as exc:
            errors[i] = str(exc)
    return out, errors
