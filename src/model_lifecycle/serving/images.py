"""Raw images in any form a client sends (encoded file bytes or uint8 pixel arrays) to
the uint8 C×H×W the model was trained on, with the ingest pipeline's own conversion."""

from __future__ import annotations

import io
from typing import Any

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

    ``image`` is the bytes of an image file (PNG, JPEG, … any format PIL reads) or a
    uint8 array H×W (grayscale) or H×W×C (C = 1, 3 or 4), as PIL and numpy lay it out.

    Raises:
        ImageDecodeError: the bytes are not a readable image, or the array's shape or
            type is not an image's, or it has more than ``max_pixels`` pixels.
    """
    if image is None:
        raise ImageDecodeError("no image: give each row an 'image' (file bytes) or a "
                               "'pixels' (uint8 array) value")
    if isinstance(image, bytes | bytearray | memoryview):
        if not len(image):
            raise ImageDecodeError("an empty image: the 'image' value holds no bytes")
        return decode_file(io.BytesIO(bytes(image)), size_hw, channels, resize,
                           max_pixels=max_pixels)
    array = _array(image)
    if array.ndim >= 2:
        check_pixels(array.shape[1], array.shape[0], max_pixels)
    if array.dtype == object:  # nested arrays, as MLflow hands over a JSON "pixels" value
        array = _array(array.tolist())
    if array.dtype == object:  # still: rows of different lengths numpy could not refuse
        raise ImageDecodeError(_RAGGED)
    if array.dtype.kind in "SU":
        raise ImageDecodeError("text where an image was expected: send 'image' as the base64 "
                               "of the file's bytes in a dataframe_split or dataframe_records "
                               "request, or 'pixels' as nested lists of 0-255 values")
    if array.size == 0:
        raise ImageDecodeError(f"an empty pixel array (shape {array.shape})")
    if array.dtype != np.uint8:
        if not np.issubdtype(array.dtype, np.integer) or array.min() < 0 or array.max() > 255:
            raise ImageDecodeError(f"pixel arrays must hold uint8 values 0-255, got "
                                   f"{array.dtype} values")
        array = array.astype(np.uint8)
    if array.ndim == 3 and array.shape[2] == 1:
        array = array[:, :, 0]
    if array.ndim not in (2, 3) or (array.ndim == 3 and array.shape[2] not in (3, 4)):
        raise ImageDecodeError(f"a pixel array must be H×W or H×W×C with C = 1, 3 or 4, "
                               f"got shape {array.shape}")
    return to_array(Image.fromarray(array), size_hw, channels, resize)


_RAGGED = ("a pixel array must be nested lists of numbers 0-255 of equal lengths (rows of "
           "the same width, pixels of the same channels)")


def _array(value: Any) -> np.ndarray:
    try:
        return np.asarray(value)
    except ValueError:  # numpy refuses ragged nested lists
        raise ImageDecodeError(_RAGGED) from None
