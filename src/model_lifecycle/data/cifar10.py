"""CIFAR-10 exactly as ``cifar-10-python.tar.gz`` ships it.

Accepts the extracted ``cifar-10-batches-py/`` directory or the ``.tar.gz`` itself.
The batches are Python pickles; they are read with an unpickler that only admits
dicts, lists, strings, bytes and numpy arrays, so a tampered file cannot run code.
"""

from __future__ import annotations

import io
import pickle
import tarfile
from collections.abc import Callable, Iterator
from contextlib import ExitStack
from functools import partial
from pathlib import Path
from typing import IO

import numpy as np

from model_lifecycle.data.imageset import ImageSet
from model_lifecycle.data.resize import resize_batch
from model_lifecycle.data.store import IN_MEMORY_BYTES, PixelSink, iter_chunks
from model_lifecycle.errors import LifecycleError

TRAIN_BATCHES = tuple(f"data_batch_{i}" for i in range(1, 6))
TEST_BATCH = "test_batch"
META = "batches.meta"
DEFAULT_CLASS_NAMES = ("airplane", "automobile", "bird", "cat", "deer",
                       "dog", "frog", "horse", "ship", "truck")
_PIXELS = 3 * 32 * 32

# What numpy arrays need to be rebuilt from a pickle, under numpy 1.x and 2.x names.
_ALLOWED_GLOBALS = {
    ("numpy.core.multiarray", "_reconstruct"),
    ("numpy._core.multiarray", "_reconstruct"),
    ("numpy.core.multiarray", "scalar"),
    ("numpy._core.multiarray", "scalar"),
    ("numpy", "ndarray"),
    ("numpy", "dtype"),
    # bytes written under pickle protocol 2 by Python 3
    ("_codecs", "encode"),
    ("__builtin__", "bytes"),
    ("builtins", "bytes"),
}


class _SafeUnpickler(pickle.Unpickler):
    def find_class(self, module: str, name: str):  # noqa: D102
        if (module, name) in _ALLOWED_GLOBALS:
            return super().find_class(module, name)
        raise pickle.UnpicklingError(f"refusing to load {module}.{name}")


def load_cifar10(path: str | Path, size_hw: tuple[int, int], *, channels: int = 3,
                 resize: str = "center_crop", in_memory_below: int = IN_MEMORY_BYTES
                 ) -> ImageSet:
    """Load the five training batches and, when present, ``test_batch``.

    One batch is held in memory at a time: each is converted and appended to a
    :class:`~model_lifecycle.data.store.PixelSink` (a memory-mapped file past
    ``in_memory_below`` bytes of pixels). The rows are always in the order
    data_batch_1 … data_batch_5, test_batch; an archive storing them in another order
    parks the early ones in their own sinks until their turn.
    """
    path = Path(path)
    image_shape = (channels, *size_hw)
    convert = partial(_convert, size_hw=size_hw, channels=channels, resize=resize)
    meta: tuple[bytes, str] | None = None
    parts: list[tuple[str, np.ndarray]] = []  # (batch name, labels), in row order
    with ExitStack() as cleanup:
        sink: PixelSink | None = None
        parked: dict[str, tuple[np.ndarray, np.ndarray]] = {}
        if path.is_dir():  # files in the canonical order, straight into one sink
            files = _folder_batches(path)
            rows = sum(size for _name, _where, size, _open in files) // _PIXELS
            sink = cleanup.enter_context(PixelSink(rows, image_shape,
                                                   in_memory_below=in_memory_below))
            streams = ((name, where, opener) for name, where, _size, opener in files)
        else:
            streams = _archive_batches(path)
        for name, where, opener in streams:
            with opener() as handle:
                if name == META:
                    meta = (handle.read(), where)
                    continue
                data, labels = _read_batch(handle, where)
            pixels = convert(data)
            del data
            if sink is not None:
                sink.append(pixels)
                parts.append((name, labels))
            else:  # archive order is arbitrary: park the batch until all are read
                with PixelSink(len(pixels), image_shape,
                               in_memory_below=in_memory_below) as segment:
                    segment.append(pixels)
                    parked[name] = (segment.finish(), labels)
            del pixels
        if sink is None:
            order = [name for name in (*TRAIN_BATCHES, TEST_BATCH) if name in parked]
            sink = cleanup.enter_context(PixelSink(
                sum(len(parked[name][1]) for name in order), image_shape,
                in_memory_below=in_memory_below))
            for name in order:
                pixels, labels = parked.pop(name)
                for chunk in iter_chunks(pixels):
                    sink.append(chunk)
                parts.append((name, labels))
                del pixels  # a parked spill file goes as soon as it is copied
        if not any(name in TRAIN_BATCHES for name, _labels in parts):
            raise LifecycleError(
                f"No CIFAR-10 training batch (data_batch_1 … data_batch_5) found in {path}: "
                "point ingest.path at the extracted cifar-10-batches-py/ folder or at "
                "cifar-10-python.tar.gz (an archive of an image folder: extract it and "
                "point ingest.path at the folder)."
            )
        images = sink.finish()
    class_names = _class_names(*meta) if meta else DEFAULT_CLASS_NAMES
    labels = np.concatenate([labels for _name, labels in parts])
    if labels.max() >= len(class_names):
        raise LifecycleError(
            f"CIFAR-10 labels in {path} go up to {labels.max()} but {META} names only "
            f"{len(class_names)} classes: the batches and the meta file do not match."
        )
    source_test = np.concatenate([np.full(len(labels), name == TEST_BATCH)
                                  for name, labels in parts])
    return ImageSet(
        images=images,
        labels=labels,
        class_names=class_names,
        source="cifar10",
        source_test=source_test if source_test.any() else None,
    )


def _convert(data: np.ndarray, *, size_hw: tuple[int, int], channels: int,
             resize: str) -> np.ndarray:
    return resize_batch(data.reshape(-1, 3, 32, 32), size_hw, channels=channels,
                        resize=resize)


Opener = Callable[[], IO[bytes]]


def _folder_batches(path: Path) -> list[tuple[str, str, int, Opener]]:
    """(name, file, size in bytes, opener) of the batches and meta file in a folder, in
    the order data_batch_1 … data_batch_5, test_batch, batches.meta."""
    root = path / "cifar-10-batches-py" if (path / "cifar-10-batches-py").is_dir() else path
    found = []
    for name in (*TRAIN_BATCHES, TEST_BATCH, META):
        file = root / name
        if file.is_file():
            size = file.stat().st_size if name != META else 0
            found.append((name, str(file), size, partial(open, file, "rb")))
    return found


def _archive_batches(path: Path) -> Iterator[tuple[str, str, Opener]]:
    """(name, archive:member, opener) of the batches and meta file of a tar archive, in
    the archive's order, each readable only until the next is yielded (a stream)."""
    if not path.exists():
        raise LifecycleError(
            f"ingest.path {path} does not exist: set it to the cifar-10-batches-py/ "
            "folder or to cifar-10-python.tar.gz."
        )
    try:
        with tarfile.open(path, "r:*") as archive:
            for member in archive:
                name = Path(member.name).name
                if member.isfile() and name in (*TRAIN_BATCHES, TEST_BATCH, META):
                    yield (name, f"{path}:{member.name}",
                           partial(archive.extractfile, member))  # type: ignore[misc]
    except (tarfile.TarError, OSError, EOFError) as exc:
        raise LifecycleError(
            f"{path} is not a readable CIFAR-10 archive ({exc}): download "
            "cifar-10-python.tar.gz again or extract it and point ingest.path at the folder."
        ) from None


def _unpickle(raw: bytes | IO[bytes], where: str) -> dict:
    """Unpickle a batch from its bytes or straight from its (file or archive) stream."""
    stream = io.BytesIO(raw) if isinstance(raw, bytes) else raw
    try:
        loaded = _SafeUnpickler(stream, encoding="bytes").load()
    except MemoryError:  # not the file's fault: say so as Python does
        raise
    except Exception as exc:  # noqa: BLE001 - any failure means the same thing to the user
        raise LifecycleError(
            f"{where} is not a CIFAR-10 python batch ({exc}): replace it with the file "
            "from cifar-10-python.tar.gz."
        ) from None
    if not isinstance(loaded, dict):
        raise LifecycleError(f"{where} holds a {type(loaded).__name__}, not the dict a "
                             "CIFAR-10 batch holds: replace it with the original file.")
    return {key.decode() if isinstance(key, bytes) else key: value
            for key, value in loaded.items()}


def _read_batch(raw: bytes | IO[bytes], where: str) -> tuple[np.ndarray, np.ndarray]:
    batch = _unpickle(raw, where)
    if "data" not in batch or "labels" not in batch:
        raise LifecycleError(
            f"{where} has keys {sorted(batch)} but a CIFAR-10 batch needs 'data' and "
            "'labels': replace it with the file from cifar-10-python.tar.gz."
        )
    data = np.asarray(batch["data"])
    labels = np.asarray(batch["labels"])
    if data.dtype != np.uint8 or data.ndim != 2 or data.shape[1] != _PIXELS:
        raise LifecycleError(
            f"{where} 'data' is {data.dtype} with shape {data.shape} but CIFAR-10 stores "
            f"uint8 rows of {_PIXELS} pixels (N×3072): replace the file with the original."
        )
    if labels.shape != (len(data),) or not np.issubdtype(labels.dtype, np.integer) \
            or (len(labels) and labels.min() < 0):
        raise LifecycleError(
            f"{where} has {len(data)} images but 'labels' has shape {labels.shape}: "
            "each image needs one non-negative integer label."
        )
    return data, labels.astype(np.int64)


def _class_names(raw: bytes | None, where: str) -> tuple[str, ...]:
    if raw is None:
        return DEFAULT_CLASS_NAMES
    meta = _unpickle(raw, where)
    names = meta.get("label_names")
    if not isinstance(names, list) or not names:
        raise LifecycleError(f"{where} has no 'label_names' list: replace it with the "
                             "original batches.meta.")
    return tuple(n.decode() if isinstance(n, bytes) else str(n) for n in names)
