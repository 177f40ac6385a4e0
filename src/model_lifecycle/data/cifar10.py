"""CIFAR-10 exactly as ``cifar-10-python.tar.gz`` ships it.

Accepts the extracted ``cifar-10-batches-py/`` directory or the ``.tar.gz`` itself.
The batches are Python pickles; they are read with an unpickler that only admits
dicts, lists, strings, bytes and numpy arrays, so a tampered file cannot run code.
"""

from __future__ import annotations

import io
import pickle
import tarfile
from collections.abc import Iterator
from pathlib import Path

import numpy as np

from model_lifecycle.data.imageset import ImageSet
from model_lifecycle.data.resize import resize_batch
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
                 resize: str = "center_crop") -> ImageSet:
    """Load the five training batches and, when present, ``test_batch``."""
    found = {name: (where, raw) for name, where, raw in _batch_files(Path(path))}
    files = {name: raw for name, (_where, raw) in found.items()}
    missing = [name for name in TRAIN_BATCHES if name not in files]
    if len(missing) == len(TRAIN_BATCHES):
        raise LifecycleError(
            f"No CIFAR-10 training batch (data_batch_1 … data_batch_5) found in {path}: "
            "point ingest.path at the extracted cifar-10-batches-py/ folder or at "
            "cifar-10-python.tar.gz."
        )
    parts, test_flags = [], []
    for name in (*TRAIN_BATCHES, TEST_BATCH):
        if name in files:
            data, labels = _read_batch(files[name], found[name][0])
            parts.append((data, labels))
            test_flags.append(np.full(len(labels), name == TEST_BATCH))
    class_names = _class_names(files.get(META), found[META][0] if META in found
                               else f"{path}/{META}")
    images = np.concatenate([data for data, _ in parts]).reshape(-1, 3, 32, 32)
    labels = np.concatenate([labels for _, labels in parts])
    if labels.max() >= len(class_names):
        raise LifecycleError(
            f"CIFAR-10 labels in {path} go up to {labels.max()} but {META} names only "
            f"{len(class_names)} classes: the batches and the meta file do not match."
        )
    source_test = np.concatenate(test_flags)
    return ImageSet(
        images=resize_batch(images, size_hw, channels=channels, resize=resize),
        labels=labels,
        class_names=class_names,
        source="cifar10",
        source_test=source_test if source_test.any() else None,
    )


def _batch_files(path: Path) -> Iterator[tuple[str, str, bytes]]:
    """Yield (batch name, where it is, raw bytes) from a directory or a tar archive;
    "where" is the file's own path (or the archive and its member) for messages."""
    if not path.exists():
        raise LifecycleError(
            f"ingest.path {path} does not exist: set it to the cifar-10-batches-py/ "
            "folder or to cifar-10-python.tar.gz."
        )
    if path.is_dir():
        root = path / "cifar-10-batches-py" if (path / "cifar-10-batches-py").is_dir() else path
        for name in (*TRAIN_BATCHES, TEST_BATCH, META):
            if (root / name).is_file():
                yield name, str(root / name), (root / name).read_bytes()
        return
    try:
        with tarfile.open(path, "r:*") as archive:
            for member in archive:
                name = Path(member.name).name
                if member.isfile() and name in (*TRAIN_BATCHES, TEST_BATCH, META):
                    yield (name, f"{path}:{member.name}",
                           archive.extractfile(member).read())  # type: ignore[union-attr]
    except (tarfile.TarError, OSError, EOFError) as exc:
        raise LifecycleError(
            f"{path} is not a readable CIFAR-10 archive ({exc}): download "
            "cifar-10-python.tar.gz again or extract it and point ingest.path at the folder."
        ) from None


def _unpickle(raw: bytes, where: str) -> dict:
    try:
        loaded = _SafeUnpickler(io.BytesIO(raw), encoding="bytes").load()
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


def _read_batch(raw: bytes, where: str) -> tuple[np.ndarray, np.ndarray]:
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
