"""Bring an in-memory uint8 batch (N×C×H×W) to another size or channel count."""

from __future__ import annotations

import numpy as np
from PIL import Image

from model_lifecycle.data.convert import to_array


def resize_batch(images: np.ndarray, size_hw: tuple[int, int], *, channels: int,
                 resize: str = "center_crop") -> np.ndarray:
    """Return ``images`` as uint8 N×``channels``×H×W; a no-op when already there."""
    n, c, h, w = images.shape
    if (c, h, w) == (channels, *size_hw):
        return np.ascontiguousarray(images)
    out = np.empty((n, channels, *size_hw), dtype=np.uint8)
    for i, image in enumerate(images):
        pil = Image.fromarray(image[0] if c == 1 else image.transpose(1, 2, 0))
        out[i] = to_array(pil, size_hw, channels, resize)  # type: ignore[arg-type]
    return out
