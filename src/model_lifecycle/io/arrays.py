"""Numpy arrays in one ``.npz`` file, read without pickle."""

from __future__ import annotations

from typing import IO

import numpy as np
from kedro.io.core import DatasetError

from model_lifecycle.data.imageset import ImageSet
from model_lifecycle.io.base import AtomicFileDataset


class NpzDataset(AtomicFileDataset[dict[str, np.ndarray]]):
    """A ``dict[str, np.ndarray]`` stored as one uncompressed ``.npz`` file.

    Loading never unpickles (``allow_pickle=False``): only plain numeric and string
    arrays can be stored, and a file carrying Python objects is refused.

    Example (``catalog.yml``)::

        splits:
          type: model_lifecycle.io.NpzDataset
          filepath: data/05_model_input/splits.npz
          versioned: true
    """

    def _check(self, data: dict[str, np.ndarray]) -> None:
        for key, value in data.items():
            if np.asarray(value).dtype.hasobject:
                raise DatasetError(f"Array '{key}' holds Python objects, which would need "
                                   "pickle to store: convert it to numbers or strings.")

    def _write(self, data: dict[str, np.ndarray], handle: IO[bytes]) -> None:
        np.savez(handle, **data)

    def _read(self, handle: IO[bytes], path: str) -> dict[str, np.ndarray]:
        try:
            with np.load(handle, allow_pickle=False) as archive:
                return {key: archive[key] for key in archive.files}
        except ValueError as exc:
            raise DatasetError(f"{path} is not a plain-array .npz file ({exc}); "
                               "re-create it with the pipeline that writes it.") from None


class ImageSetDataset(NpzDataset):
    """An :class:`~model_lifecycle.data.ImageSet` (all images as one uint8 array)."""

    def load(self) -> ImageSet:  # type: ignore[override]
        return ImageSet.from_arrays(super().load())

    def save(self, data: ImageSet) -> None:  # type: ignore[override]
        super().save(data.to_arrays())
