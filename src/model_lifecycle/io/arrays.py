"""Numpy arrays in one ``.npz`` file, read without pickle; image sets memory-mapped."""

from __future__ import annotations

import struct
import zipfile
from typing import IO, Any

import numpy as np
from kedro.io.core import DatasetError

from model_lifecycle.data.imageset import ImageSet
from model_lifecycle.data.store import IN_MEMORY_BYTES, iter_chunks, map_pixels
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


class ImageSetDataset(AtomicFileDataset[ImageSet]):
    """An :class:`~model_lifecycle.data.ImageSet` as one uncompressed ``.npz`` file whose
    pixels are memory-mapped where they lie.

    An ``.npz`` is a zip of ``.npy`` files; stored uncompressed (as ``np.savez`` always
    writes them) the ``images.npy`` member is one contiguous block of the file, so it is
    mapped at its offset (``mode "r"``) and nothing is read until it is indexed. Every
    version written before keeps loading this way, ``np.load`` still reads the file, and
    the pixels are written in chunks (read from the file behind a memory map, never
    through the map), so a set larger than memory is saved and loaded with bounded
    memory. Pixel arrays of at most ``in_memory_below`` bytes (default 512 MiB) are read
    into memory instead: small sets keep the speed of a plain array. A compressed or
    remote file is read into memory whatever its size.

    The file also holds the set's fingerprint, computed in chunks when it was written, so
    loading does not hash every pixel.

    Example (``catalog.yml``)::

        images:
          type: model_lifecycle.io.ImageSetDataset
          filepath: data/03_primary/images.npz
          versioned: true
          in_memory_below: 536870912  # bytes; 0: always memory-mapped
    """

    def __init__(self, *, in_memory_below: int = IN_MEMORY_BYTES, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self._in_memory_below = in_memory_below

    def _check(self, data: ImageSet) -> None:
        for key, value in data.to_arrays().items():
            if value.dtype.hasobject:
                raise DatasetError(f"Array '{key}' holds Python objects, which would need "
                                   "pickle to store: convert it to numbers or strings.")

    def _write(self, data: ImageSet, handle: IO[bytes]) -> None:
        arrays = data.to_arrays()
        pixels = arrays.pop(_PIXELS)
        with zipfile.ZipFile(handle, "w", zipfile.ZIP_STORED, allowZip64=True) as archive:
            with archive.open(f"{_PIXELS}.npy", "w", force_zip64=True) as member:
                np.lib.format.write_array_header_2_0(
                    member, np.lib.format.header_data_from_array_1_0(pixels))
                for chunk in iter_chunks(pixels):
                    member.write(memoryview(chunk).cast("B"))
            for key, value in arrays.items():
                with archive.open(f"{key}.npy", "w", force_zip64=True) as member:
                    np.lib.format.write_array(member, np.asanyarray(value),
                                              allow_pickle=False)

    def _read(self, handle: IO[bytes], path: str) -> ImageSet:
        try:
            with zipfile.ZipFile(handle) as archive:
                arrays = {name.removesuffix(".npy"): _read_member(archive, name)
                          for name in archive.namelist() if name != f"{_PIXELS}.npy"}
                info = archive.getinfo(f"{_PIXELS}.npy")
                if self._protocol == "file" and info.compress_type == zipfile.ZIP_STORED:
                    arrays[_PIXELS] = self._map_pixels(archive, info, path)
                else:
                    arrays[_PIXELS] = _read_member(archive, info.filename)
            return ImageSet.from_arrays(arrays)
        except (ValueError, KeyError, zipfile.BadZipFile) as exc:
            raise DatasetError(f"{path} is not an image set .npz ({exc}); run "
                               "`kedro run --pipelines=ingest` again.") from None

    def _map_pixels(self, archive: zipfile.ZipFile, info: zipfile.ZipInfo,
                    path: str) -> np.ndarray:
        start = _member_data_offset(archive, info)
        with archive.open(info) as member:
            version = np.lib.format.read_magic(member)
            if version not in _HEADER_READERS:
                raise ValueError(f"images.npy has format version {version}")
            shape, fortran, dtype = _HEADER_READERS[version](member)
            header = member.tell()
        if dtype != np.uint8 or fortran or len(shape) != 4:
            raise ValueError(f"images are {dtype} {shape}, not uint8 N×C×H×W")
        pixels = map_pixels(path, start + header, shape)
        if pixels.nbytes > self._in_memory_below:
            return pixels
        copy, start = np.empty(shape, dtype=np.uint8), 0
        for chunk in iter_chunks(pixels):
            copy[start:start + len(chunk)], start = chunk, start + len(chunk)
        return copy

    def _describe(self) -> dict[str, Any]:
        return super()._describe() | {"in_memory_below": self._in_memory_below}


_PIXELS = "images"
_HEADER_READERS = {(1, 0): np.lib.format.read_array_header_1_0,
                   (2, 0): np.lib.format.read_array_header_2_0}
_LOCAL_HEADER = struct.Struct("<4s22xHH")  # signature … file name length, extra length


def _member_data_offset(archive: zipfile.ZipFile, info: zipfile.ZipInfo) -> int:
    """Where a stored member's bytes begin in the zip file.

    zipfile reads members through a stream and exposes no offset; the local file header
    (APPNOTE.TXT 4.3.7: 30 bytes, then the name and an extra field whose lengths it
    gives) sits at ``info.header_offset``. Checked against ``np.load`` in the tests.
    """
    handle = archive.fp
    handle.seek(info.header_offset)
    signature, name_length, extra_length = _LOCAL_HEADER.unpack(
        handle.read(_LOCAL_HEADER.size))
    if signature != b"PK\x03\x04":
        raise ValueError(f"no local header for {info.filename}")
    return info.header_offset + _LOCAL_HEADER.size + name_length + extra_length


def _read_member(archive: zipfile.ZipFile, name: str) -> np.ndarray:
    with archive.open(name) as member:
        return np.lib.format.read_array(member, allow_pickle=False)
