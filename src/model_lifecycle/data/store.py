"""Pixel arrays larger than memory: written chunk by chunk to an ``.npy`` file, read back
as a read-only memory map, and passed over in chunks.

Reads through a memory map make every page touched resident in the process (and count
in its peak RSS) until the map is dropped; sequential passes over a whole array
(fingerprint, copy into a dataset) therefore read the mapped file with plain reads,
which go through the page cache only. Random access (a training batch) indexes the map.
"""

from __future__ import annotations

import mmap
import os
import tempfile
import weakref
from collections.abc import Iterator
from pathlib import Path

import numpy as np

IN_MEMORY_BYTES = 512 * 2**20
"""Pixel arrays of at most this many bytes are decoded into and loaded into memory;
larger ones live in a file and are memory-mapped."""
CHUNK_BYTES = 16 * 2**20  # one sequential read or write: large enough for the disk, small for RSS
SPILL_PREFIX = "model-lifecycle-pixels-"


class PixelSink:
    """Rows of uint8 images appended in order, into memory or into a spill file.

    Up to ``capacity`` rows of ``image_shape`` (C, H, W). When they would take more than
    ``in_memory_below`` bytes, rows go to an ``.npy`` file in ``directory`` (default: the
    system's temporary folder, ``TMPDIR``) with positioned writes, so no page of it stays
    resident; :meth:`finish` maps the written rows read-only and the file is removed when
    that map is garbage-collected (or at exit). Use as a context manager: an error
    removes the file.

    Example::

        with PixelSink(n, (3, 32, 32)) as sink:
            for chunk in decoded_chunks:
                sink.append(chunk)
            pixels = sink.finish()  # np.ndarray, or np.memmap (mode "r") when large
    """

    def __init__(self, capacity: int, image_shape: tuple[int, int, int], *,
                 directory: str | Path | None = None,
                 in_memory_below: int = IN_MEMORY_BYTES) -> None:
        self.image_shape = tuple(image_shape)
        self.row_bytes = int(np.prod(self.image_shape))
        self.capacity = capacity
        self.rows = 0
        self.path: str | None = None
        self._memory: np.ndarray | None = None
        if capacity * self.row_bytes <= in_memory_below:
            self._memory = np.empty((capacity, *self.image_shape), dtype=np.uint8)
            return
        handle, self.path = tempfile.mkstemp(prefix=SPILL_PREFIX, suffix=".npy",
                                             dir=directory)
        os.close(handle)
        # open_memmap writes the .npy header and sizes the (sparse) file; rows are then
        # written with pwrite, never through a writable map (its dirty pages would count
        # as the process's memory)
        header = np.lib.format.open_memmap(self.path, mode="w+", dtype=np.uint8,
                                           shape=(capacity, *self.image_shape))
        self._offset = header.offset
        del header
        self._fd = os.open(self.path, os.O_WRONLY)

    def __len__(self) -> int:
        return self.rows

    def append(self, rows: np.ndarray) -> None:
        """Add ``rows`` (uint8 n×C×H×W) after those already appended."""
        if rows.shape[1:] != self.image_shape or rows.dtype != np.uint8:
            raise ValueError(f"rows must be uint8 n×{self.image_shape}, got {rows.dtype} "
                             f"{rows.shape}")
        if self.rows + len(rows) > self.capacity:
            raise ValueError(f"{self.rows + len(rows)} rows exceed the capacity of "
                             f"{self.capacity}")
        if self._memory is not None:
            self._memory[self.rows:self.rows + len(rows)] = rows
        else:
            data = memoryview(np.ascontiguousarray(rows)).cast("B")
            position = self._offset + self.rows * self.row_bytes
            while data:
                written = os.pwrite(self._fd, data, position)
                data, position = data[written:], position + written
        self.rows += len(rows)

    def finish(self) -> np.ndarray:
        """The appended rows: an array, or a read-only ``np.memmap`` of the spill file."""
        if self._memory is not None:
            return self._memory[:self.rows]
        os.close(self._fd)
        self._fd = -1
        if self.rows == 0:
            self.discard()
            return np.empty((0, *self.image_shape), dtype=np.uint8)
        pixels = map_pixels(self.path, self._offset, (self.rows, *self.image_shape))
        weakref.finalize(pixels, _remove, self.path)
        return pixels

    def discard(self) -> None:
        """Remove the spill file (if any) without returning its rows."""
        if self.path is None:
            return
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1
        _remove(self.path)

    def __enter__(self) -> PixelSink:
        return self

    def __exit__(self, kind, value, traceback) -> None:
        if kind is not None:
            self.discard()


class MappedPixels(np.memmap):
    """A read-only ``np.memmap`` that pickles as a reference to its file and keeps few
    pages resident.

    Every page an index reads stays mapped into the process (and counts in its RSS)
    until the map drops it, and the kernel maps whole folios of the page cache (up to
    megabytes) at each fault; after each copy by index (a training or evaluation batch)
    the map's pages are dropped from the process (``madvise(MADV_DONTNEED)``: they stay
    in the page cache and the next read maps them again, a minor fault), so an epoch
    over a set larger than memory keeps its RSS bounded.

    A plain memmap pickles as a full copy of its data; this one (and each C-contiguous
    view of it) pickles as (file, offset, shape), so handing the pixels to another
    process (``torch.save`` of a distributed job, a process pool) maps the same file
    there instead of copying every image.
    """

    def __getitem__(self, key):
        rows = super().__getitem__(key)
        if isinstance(rows, np.memmap) and not np.may_share_memory(rows, self):
            _release(self)  # a copy (fancy index): the pages it mapped can go
            return rows.view(np.ndarray)
        return rows

    def __reduce__(self):
        mapped = mapped_file(self)
        if mapped is None:  # not a plain view of the file: its values, like any array
            return np.asarray(self).copy().__reduce__()
        return map_pixels, (*mapped, self.shape)


def _release(array: np.ndarray) -> None:
    root = array
    while isinstance(root.base, np.memmap):
        root = root.base
    if isinstance(root.base, mmap.mmap):
        root.base.madvise(mmap.MADV_DONTNEED)


def map_pixels(filename: str, offset: int, shape: tuple[int, ...]) -> np.ndarray:
    """``shape`` uint8 values of ``filename`` from byte ``offset``, mapped read-only."""
    if not shape[0]:
        return np.empty(shape, dtype=np.uint8)
    return MappedPixels(filename, dtype=np.uint8, mode="r", offset=offset, shape=shape)


def _remove(path: str) -> None:
    try:
        os.unlink(path)
    except FileNotFoundError:
        pass


def chunk_rows(row_bytes: int, chunk_bytes: int = CHUNK_BYTES) -> int:
    """Rows of ``row_bytes`` bytes per sequential chunk (at least one)."""
    return max(1, chunk_bytes // max(1, row_bytes))


def iter_chunks(array: np.ndarray, chunk_bytes: int = CHUNK_BYTES) -> Iterator[np.ndarray]:
    """C-contiguous copies of consecutive row ranges of ``array``, in order.

    A C-contiguous view of a memory map is read from its file with plain reads, so a
    pass over an array larger than memory keeps only one chunk resident.
    """
    step = chunk_rows(int(np.prod(array.shape[1:], dtype=np.int64)) * array.itemsize,
                      chunk_bytes)
    mapped = mapped_file(array)
    if mapped is None:
        for start in range(0, len(array), step):
            yield np.ascontiguousarray(array[start:start + step])
        return
    filename, offset = mapped
    row_shape, row_bytes = array.shape[1:], array[:1].nbytes
    with open(filename, "rb") as handle:
        for start in range(0, len(array), step):
            rows = min(step, len(array) - start)
            handle.seek(offset + start * row_bytes)
            chunk = np.fromfile(handle, dtype=array.dtype, count=rows * row_bytes
                                // array.itemsize)
            if chunk.size * array.itemsize != rows * row_bytes:
                raise OSError(f"{filename} ended early: it was truncated while mapped")
            yield chunk.reshape(rows, *row_shape)


def mapped_file(array: np.ndarray) -> tuple[str, int] | None:
    """``(file name, byte offset of array[0])`` when ``array`` is a C-contiguous view of
    a file-backed ``np.memmap`` whose file still exists; ``None`` otherwise."""
    if not isinstance(array, np.memmap) or not array.flags.c_contiguous:
        return None
    root = array
    while isinstance(root.base, np.memmap):
        root = root.base
    if not isinstance(root.base, mmap.mmap) or not root.filename \
            or not os.path.exists(root.filename):
        return None
    start = (array.__array_interface__["data"][0]
             - root.__array_interface__["data"][0])
    return root.filename, root.offset + start


def gather_rows(array: np.ndarray, indices: np.ndarray) -> np.ndarray:
    """``array[indices]`` as an in-memory array, rows in the order of ``indices``.

    A memory map is read in ascending index order (neighbouring rows share pages and
    the disk reads ahead), then the rows are put back in the order asked for.
    """
    indices = np.asarray(indices, dtype=np.int64)
    if not isinstance(array, np.memmap):
        return array[indices]
    order = np.argsort(indices, kind="stable")
    rows = np.empty((len(indices), *array.shape[1:]), dtype=array.dtype)
    rows[order] = array[indices[order]]
    return rows


def take_rows(array: np.ndarray, indices: np.ndarray, *,
              in_memory_below: int = IN_MEMORY_BYTES) -> np.ndarray:
    """``array[indices]`` (uint8 N×C×H×W) as a new set of rows, copied chunk by chunk
    into a :class:`PixelSink`: in memory up to ``in_memory_below`` bytes, else a spilled
    memory map, so a subset of a set larger than memory stays out of memory."""
    indices = np.asarray(indices, dtype=np.int64)
    step = chunk_rows(int(np.prod(array.shape[1:], dtype=np.int64)))
    with PixelSink(len(indices), array.shape[1:], in_memory_below=in_memory_below) as sink:
        for start in range(0, len(indices), step):
            sink.append(gather_rows(array, indices[start:start + step]))
        return sink.finish()
