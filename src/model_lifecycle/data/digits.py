"""The embedded default: scikit-learn's bundled handwritten digits (no download).

1,797 real 8×8 grayscale scans of the digits 0–9 (UCI ML hand-written digits),
shipped inside scikit-learn itself.
"""

from __future__ import annotations

import numpy as np
from sklearn.datasets import load_digits as _sklearn_digits

from model_lifecycle.data.imageset import ImageSet
from model_lifecycle.data.resize import resize_batch

_DIGITS_MAX = 16  # pixel values in the bundled scans run 0..16


def load_digits(size_hw: tuple[int, int], *, channels: int = 1,
                resize: str = "center_crop") -> ImageSet:
    """Return the digits as uint8 N×``channels``×H×W."""
    bunch = _sklearn_digits()
    images = np.round(bunch.images * (255 / _DIGITS_MAX)).astype(np.uint8)[:, None]
    images = resize_batch(images, size_hw, channels=channels, resize=resize)
    return ImageSet(
        images=images,
        labels=bunch.target.astype(np.int64),
        class_names=tuple(str(name) for name in bunch.target_names),
        source="digits",
    )
