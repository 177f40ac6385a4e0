"""Numpy arrays in one ``.npz`` file, versioned, written atomically, read without pickle."""

from __future__ import annotations

import io
import uuid
from copy import deepcopy
from pathlib import PurePosixPath
from typing import Any

import fsspec
import numpy as np
from kedro.io.core import (
    AbstractVersionedDataset,
    DatasetError,
    Version,
    get_filepath_str,
    get_protocol_and_path,
)

from model_lifecycle.data.imageset import ImageSet


class NpzDataset(AbstractVersionedDataset[dict[str, np.ndarray], dict[str, np.ndarray]]):
    """A ``dict[str, np.ndarray]`` stored as one uncompressed ``.npz`` file.

    Loading never unpickles (``allow_pickle=False``): only plain numeric and string
    arrays can be stored, and a file carrying Python objects is refused.

    Example (``catalog.yml``)::

        splits:
          type: model_lifecycle.io.NpzDataset
          filepath: data/05_model_input/splits.npz
          versioned: true
    """

    def __init__(self, *, filepath: str, version: Version | None = None,
                 credentials: dict[str, Any] | None = None,
                 fs_args: dict[str, Any] | None = None,
                 metadata: dict[str, Any] | None = None) -> None:
        protocol, path = get_protocol_and_path(filepath, version)
        fs_args = deepcopy(fs_args) or {}
        if protocol == "file":
            fs_args.setdefault("auto_mkdir", True)
        self._protocol = protocol
        self._fs = fsspec.filesystem(protocol, **(credentials or {}), **fs_args)
        self.metadata = metadata
        super().__init__(filepath=PurePosixPath(path), version=version,
                         exists_function=self._fs.exists, glob_function=self._fs.glob)

    def load(self) -> dict[str, np.ndarray]:
        path = get_filepath_str(self._get_load_path(), self._protocol)
        with self._fs.open(path, "rb") as handle:
            raw = handle.read()
        try:
            with np.load(io.BytesIO(raw), allow_pickle=False) as archive:
                return {key: archive[key] for key in archive.files}
        except ValueError as exc:
            raise DatasetError(f"{path} is not a plain-array .npz file ({exc}); "
                               "re-create it with the pipeline that writes it.") from None

    def save(self, data: dict[str, np.ndarray]) -> None:
        path = get_filepath_str(self._get_save_path(), self._protocol)
        buffer = io.BytesIO()
        np.savez(buffer, **data)
        self._write_atomically(path, buffer.getvalue())
        self._fs.invalidate_cache(get_filepath_str(self._filepath, self._protocol))

    def _write_atomically(self, path: str, payload: bytes) -> None:
        # The temporary name never matches the dataset's filename, so Kedro's
        # "latest version" lookup cannot pick up a partial write.
        tmp = f"{path}.tmp-{uuid.uuid4().hex}"
        try:
            with self._fs.open(tmp, "wb") as handle:
                handle.write(payload)
            self._fs.mv(tmp, path)
        finally:
            if self._fs.exists(tmp):
                self._fs.rm(tmp)

    def _exists(self) -> bool:
        try:
            path = get_filepath_str(self._get_load_path(), self._protocol)
        except DatasetError:
            return False
        return self._fs.exists(path)

    def _describe(self) -> dict[str, Any]:
        return {"filepath": self._filepath, "protocol": self._protocol,
                "version": self._version}


class ImageSetDataset(NpzDataset):
    """An :class:`~model_lifecycle.data.ImageSet` (all images as one uint8 array)."""

    def load(self) -> ImageSet:  # type: ignore[override]
        return ImageSet.from_arrays(super().load())

    def save(self, data: ImageSet) -> None:  # type: ignore[override]
        super().save(data.to_arrays())
