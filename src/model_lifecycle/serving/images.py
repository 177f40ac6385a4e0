"""Raw images in any form a client sends (encoded file bytes or uint8 pixel arrays) to
the uint8 C×H×W the model was trained on, with the ingest pipeline's own conversion."""

from __future__ import annotations

import base64
import binascii
import io
import re
from pathlib import Path
from typing import IO, Any

import numpy as np
from PIL import Image

from model_lifecycle.data.convert import (
    MAX_PIXELS,
    ImageDecodeError,
    Resize,
    check_pixels,
    decode_file,
    to_array,
)


def to_model_input(image: Any, size_hw: tuple[int, int], channels: int,
                   resize: Resize = "center_crop", *, max_pixels: int = MAX_PIXELS
                   ) -> np.ndarray:
    """One image as uint8 ``channels``×H×W, converted exactly as ``ingest`` converts files.

    ``image`` is the bytes of an image file (PNG, JPEG, … any format PIL reads), their
    base64 (text or bytes, as JSON requests carry them; a ``data:`` URL too), or a uint8
    array H×W (grayscale) or H×W×C (C = 1, 3 or 4), as PIL and numpy lay it out.

    Raises:
        ImageDecodeError: the bytes are not a readable image, or the array's shape or
            type is not an image's, or it has more than ``max_pixels`` pixels.
    """
    if image is None:
        raise ImageDecodeError("no image: give each row an 'image' (file bytes) or a "
                               "'pixels' (uint8 array) value")
    if isinstance(image, str):
        image = _from_base64(image.encode("ascii", "replace"))
    if isinstance(image, bytes | bytearray | memoryview):
        return _decode_bytes(bytes(image), size_hw, channels, resize, max_pixels)
    array = _array(image)
    if array.ndim >= 2:
        check_pixels(array.shape[1], array.shape[0], max_pixels)
    if array.dtype == object:  # nested arrays, as MLflow hands over a JSON "pixels" value
        array = _array(array.tolist())
    if array.dtype == object:  # still: rows of different lengths numpy could not refuse
        raise ImageDecodeError(_RAGGED)
    if array.dtype.kind in "SU":
        raise ImageDecodeError("text where an image was expected: send 'image' as the base64 "
                               "of one file's bytes, or 'pixels' as nested lists of 0-255 "
                               "values")
    if array.size == 0:
        raise ImageDecodeError(f"an empty pixel array (shape {array.shape})")
    array = _uint8(array)
    if array.ndim == 3 and array.shape[2] == 1:
        array = array[:, :, 0]
    if array.ndim not in (2, 3) or (array.ndim == 3 and array.shape[2] not in (3, 4)):
        raise ImageDecodeError(f"a pixel array must be H×W or H×W×C with C = 1, 3 or 4, "
                               f"got shape {array.shape}")
    return to_array(Image.fromarray(array), size_hw, channels, resize)


def source_pixels(image: Any) -> int:
    """Width × height of ``image`` as sent (file bytes or their base64: from the header,
    nothing decoded; a pixel array: its shape), 0 when that cannot be told (the image's
    own error comes when it is decoded)."""
    try:
        if isinstance(image, str):
            image = _from_base64(image.encode("ascii", "replace"))
        if isinstance(image, bytes | bytearray | memoryview):
            data = bytes(image)
            if not _DATA_URL.match(data):  # the file's own bytes first, as decoding does
                found = header_pixels(io.BytesIO(data))
                if found is not None or not _BASE64.fullmatch(data):
                    return found or 0
            return header_pixels(io.BytesIO(_from_base64(data))) or 0
        if isinstance(image, np.ndarray) and image.ndim >= 2:  # noqa: PLR2004
            return int(image.shape[0] * image.shape[1])
        # JSON pixels: rows of pixels (lists, or an object array of them), not converted
        if isinstance(image, list | tuple | np.ndarray) and len(image) and isinstance(
                image[0], list | tuple | np.ndarray):
            return len(image) * len(image[0])
        return 0
    except Exception:  # noqa: BLE001 - any value: its decoding says what is wrong
        return 0


def header_pixels(source: str | Path | IO[bytes]) -> int | None:
    """Width × height from an image file's header (nothing decoded); None when PIL reads
    no image there (its decoding will say why)."""
    try:
        with Image.open(source) as opened:
            return opened.width * opened.height
    except Exception:  # noqa: BLE001 - any file
        return None


def _decode_bytes(data: bytes, size_hw: tuple[int, int], channels: int, resize: Resize,
                  max_pixels: int) -> np.ndarray:
    """A file's bytes, or their base64 (as JSON requests carry them), decoded."""
    if not data:
        raise ImageDecodeError("an empty image: the 'image' value holds no bytes")
    if _DATA_URL.match(data):
        data = _from_base64(data)
    try:
        return decode_file(io.BytesIO(data), size_hw, channels, resize, max_pixels=max_pixels)
    except ImageDecodeError:
        if not _BASE64.fullmatch(data):  # the file's own bytes, not readable
            raise
    # base64 text: the raw bytes came first, as a plain-text image format (PNM) is all
    # base64 characters too
    return decode_file(io.BytesIO(_from_base64(data)), size_hw, channels, resize,
                       max_pixels=max_pixels)


def _uint8(array: np.ndarray) -> np.ndarray:
    """``array`` as uint8, if its values are whole numbers 0-255 (of any numeric type)."""
    if array.dtype == np.uint8:
        return array
    if array.dtype.kind not in "iuf":
        problem = "values that are not numbers"
    elif array.dtype.kind == "f" and not np.isfinite(array).all():
        problem = "NaN or infinite values"
    elif array.dtype.kind == "f" and (array != np.round(array)).any():
        problem = "fractions (scale 0-1 values by 255 and round them)"
    elif array.min() < 0 or array.max() > 255:
        problem = f"values from {array.min():g} to {array.max():g}"
    else:
        return array.astype(np.uint8)
    raise ImageDecodeError(f"pixel values must be whole numbers 0-255, got {problem}")


# What base64 text consists of (either alphabet, padding, line breaks); no image file does.
_BASE64 = re.compile(rb"[A-Za-z0-9+/_\-=\s]+")
_DATA_URL = re.compile(rb"^data:[\w.+-]+/[\w.+-]+;base64,")


def _from_base64(text: bytes) -> bytes:
    """The bytes a base64 text encodes (standard or URL-safe alphabet, padding optional,
    line breaks and a ``data:image/...;base64,`` prefix allowed)."""
    body = b"".join(_DATA_URL.sub(b"", text.strip()).split())
    if not body:
        raise ImageDecodeError("an empty image: the 'image' value holds no bytes")
    try:
        return base64.b64decode(body + b"=" * (-len(body) % 4), altchars=b"-_"
                                if b"-" in body or b"_" in body else None, validate=True)
    except (binascii.Error, ValueError):
        raise ImageDecodeError("'image' text that is not base64: send the base64 of the "
                               "image file's bytes") from None


_RAGGED = ("a pixel array must be nested lists of numbers 0-255 of equal lengths (rows of "
           "the same width, pixels of the same channels)")


def _array(value: Any) -> np.ndarray:
    try:
        return np.asarray(value)
    except ValueError:  # numpy refuses ragged nested lists
        raise ImageDecodeError(_RAGGED) from None
