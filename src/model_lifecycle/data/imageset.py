"""``ImageSet``: a whole data set as one uint8 array, its labels and class names."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from functools import cached_property

import numpy as np

from model_lifecycle.data.store import iter_chunks


@dataclass(frozen=True)
class ImageSet:
    """Every image of a source, already converted to one size and channel count.

    Attributes:
        images: uint8 array, N×C×H×W: in memory, or a read-only ``np.memmap`` for a set
            larger than memory (index it; never copy it whole, see ``data/store.py``).
        labels: int64 array, N, values in ``range(len(class_names))``.
        class_names: one name per class, in label order.
        source: where the images came from (``digits``, ``image_folder``, ``cifar10``).
        source_test: bool array, N, marking the source's own test split, or ``None``
            when the source brings no test split of its own.
        skipped: ``"<file>: <reason>"`` for every input skipped under
            ``on_bad_image: skip``.
    """

    images: np.ndarray
    labels: np.ndarray
    class_names: tuple[str, ...]
    source: str
    source_test: np.ndarray | None = None
    skipped: tuple[str, ...] = field(default_factory=tuple)

    def __post_init__(self) -> None:
        if self.images.dtype != np.uint8 or self.images.ndim != 4:
            raise ValueError(f"images must be uint8 N×C×H×W, got {self.images.dtype} "
                             f"with shape {self.images.shape}")
        if self.labels.shape != (len(self.images),):
            raise ValueError(f"labels must have shape ({len(self.images)},), "
                             f"got {self.labels.shape}")
        if self.source_test is not None and self.source_test.shape != self.labels.shape:
            raise ValueError("source_test must have one entry per image")

    def __len__(self) -> int:
        return len(self.labels)

    @property
    def image_shape(self) -> tuple[int, int, int]:
        """(C, H, W)."""
        return tuple(self.images.shape[1:])  # type: ignore[return-value]

    def fingerprint(self) -> str:
        """A short content hash of pixels, labels and class names (changes with any of them)."""
        return self._fingerprint

    @cached_property
    def _fingerprint(self) -> str:
        digest = hashlib.sha256()
        digest.update(str(self.images.shape).encode())
        for chunk in iter_chunks(self.images):  # the same digest as one update, in chunks
            digest.update(chunk.data)
        digest.update(self.labels.astype(np.int64).tobytes())
        digest.update("\x1f".join(self.class_names).encode())
        return digest.hexdigest()[:16]

    def to_arrays(self) -> dict[str, np.ndarray]:
        """Plain arrays (no Python objects), safe to store without pickle."""
        arrays = {
            "images": self.images,
            "labels": self.labels.astype(np.int64),
            "class_names": np.array(self.class_names, dtype=np.str_),
            "source": np.array(self.source, dtype=np.str_),
            "skipped": np.array(self.skipped, dtype=np.str_),
            "fingerprint": np.array(self.fingerprint(), dtype=np.str_),
        }
        if self.source_test is not None:
            arrays["source_test"] = self.source_test.astype(bool)
        return arrays

    @classmethod
    def from_arrays(cls, arrays: dict[str, np.ndarray]) -> ImageSet:
        """Inverse of :meth:`to_arrays`. A stored ``fingerprint`` is taken as it is (it
        was computed from these very arrays when they were written), so loading a large
        set does not read every pixel; arrays without one get it computed when asked."""
        data = cls(
            images=arrays["images"],
            labels=arrays["labels"].astype(np.int64),
            class_names=tuple(str(name) for name in arrays["class_names"]),
            source=str(arrays["source"]),
            source_test=arrays["source_test"] if "source_test" in arrays else None,
            skipped=tuple(str(item) for item in arrays["skipped"]),
        )
        if "fingerprint" in arrays:  # fills the cached_property (frozen: no __setattr__)
            data.__dict__["_fingerprint"] = str(arrays["fingerprint"])
        return data
