"""Images in class folders: ``<root>/<class>/<image>`` or ``<root>/{train,test}/<class>/<image>``.

Decoding runs in worker processes, a chunk of files each, and every image lands
in one preallocated uint8 array (a memory-mapped file for a set larger than
``data.store.IN_MEMORY_BYTES``): no per-image files, no per-image tensors.
"""

from __future__ import annotations

import logging
import multiprocessing as mp
import os
from collections import deque
from concurrent.futures import Future, ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from model_lifecycle.data.convert import IMAGE_SUFFIXES, MAX_PIXELS, decode_files
from model_lifecycle.data.imageset import ImageSet
from model_lifecycle.data.store import IN_MEMORY_BYTES, PixelSink
from model_lifecycle.errors import LifecycleError

log = logging.getLogger(__name__)

_CHUNK = 1024  # files per worker task: large enough to amortise the IPC
_SERIAL_BELOW = 2048  # fewer files than this decode in-process (no pool start-up)


@dataclass(frozen=True)
class _Entry:
    path: Path
    label: int
    is_test: bool


def load_image_folder(root: str | Path, size_hw: tuple[int, int], *, channels: int = 3,
                      resize: str = "center_crop", on_bad_image: str = "error",
                      num_workers: int | None = None, max_pixels: int = MAX_PIXELS,
                      in_memory_below: int = IN_MEMORY_BYTES, min_classes: int = 2
                      ) -> ImageSet:
    """Read every image under ``root``; class names are the folder names, sorted.
    ``min_classes``: class folders it must hold (2 to train a classifier; 1 for shifted
    test images of a model's classes, which may be of one class only).

    Decoded chunks are appended to a :class:`~model_lifecycle.data.store.PixelSink` as
    they arrive: more than ``in_memory_below`` bytes of pixels go to a file and come back
    memory-mapped."""
    root = Path(root)
    entries, class_names, has_test = _scan(root)
    failures: dict[int, str] = {}
    paths = [str(entry.path) for entry in entries]
    with PixelSink(len(entries), (channels, *size_hw), in_memory_below=in_memory_below) as sink:
        for start, chunk, errors in _decode_all(paths, size_hw, channels, resize,
                                                num_workers, max_pixels):
            failures.update(errors)
            if failures and on_bad_image == "error":
                index, reason = min(failures.items())
                raise LifecycleError(
                    f"Cannot read image {paths[index]} ({reason}): replace or delete the "
                    "file, or set ingest.on_bad_image: skip to leave such files out."
                )
            readable = np.ones(len(chunk), dtype=bool)
            if errors:  # skipped files leave no row: the rows stay in file order
                readable[[index - start for index in errors]] = False
            sink.append(chunk[readable] if errors else chunk)
        images = sink.finish()
    keep = np.ones(len(entries), dtype=bool)
    keep[list(failures)] = False
    if failures:
        log.warning("Skipped %d unreadable file(s) under %s", len(failures), root)
    labels = np.array([entry.label for entry in entries], dtype=np.int64)[keep]
    _check_classes(labels, class_names, root, min_classes)
    is_test = np.array([entry.is_test for entry in entries], dtype=bool)[keep]
    return ImageSet(
        images=images,
        labels=labels,
        class_names=class_names,
        source="image_folder",
        source_test=is_test if has_test else None,
        skipped=tuple(f"{paths[i]}: {reason}" for i, reason in sorted(failures.items())),
    )


def _scan(root: Path) -> tuple[list[_Entry], tuple[str, ...], bool]:
    if not root.is_dir():
        raise LifecycleError(
            f"ingest.path {root} is not a folder: point it at a folder laid out as "
            "<root>/<class>/<image> or <root>/train|test/<class>/<image>."
        )
    subdirs = {p.name: p for p in _visible(root) if p.is_dir()}
    # <root>/train[/test]/<class>/<image>: a folder holding only "train" (and "test")
    # is a split layout, never a data set with classes named "train" and "test".
    split_layout = "train" in subdirs and set(subdirs) <= {"train", "test"}
    has_test = split_layout and "test" in subdirs
    parts = [(subdirs["train"], False)] if split_layout else [(root, False)]
    if has_test:
        parts.append((subdirs["test"], True))
    train_dir = parts[0][0]
    class_names = tuple(sorted(p.name for p in _visible(train_dir) if p.is_dir()))
    if not class_names:
        raise LifecycleError(
            f"{train_dir} holds no class folders: lay images out as "
            f"{train_dir}/<class>/<image> (at least two classes)."
        )
    index = {name: i for i, name in enumerate(class_names)}
    entries: list[_Entry] = []
    for part, is_test in parts:
        _refuse_loose_images(part)
        for class_dir in sorted(p for p in _visible(part) if p.is_dir()):
            if class_dir.name not in index:
                raise LifecycleError(
                    f"Test class folder {class_dir} has no matching folder in {train_dir}: "
                    "rename it to one of the training classes or add training images for it."
                )
            files = sorted(p for p in _visible(class_dir) if p.is_file())
            if not files and not is_test:
                raise LifecycleError(
                    f"Class folder {class_dir} is empty: add images to it or remove it."
                )
            entries += [_Entry(f, index[class_dir.name], is_test) for f in files]
    return entries, class_names, has_test


def _visible(folder: Path) -> list[Path]:
    """Folder entries, without hidden files such as .DS_Store."""
    return [p for p in folder.iterdir() if not p.name.startswith(".")]


def _refuse_loose_images(folder: Path) -> None:
    loose = sorted(p for p in _visible(folder)
                   if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)
    if loose:
        raise LifecycleError(
            f"Image {loose[0]} is not inside a class folder: move it to "
            f"{folder}/<class>/{loose[0].name}."
        )


def _check_classes(labels: np.ndarray, class_names: tuple[str, ...], root: Path,
                   min_classes: int = 2) -> None:
    counts = np.bincount(labels, minlength=len(class_names))
    if len(class_names) < min_classes:
        raise LifecycleError(
            f"{root} holds a single class ('{class_names[0]}'): a classifier needs at least "
            "two class folders."
        )
    empty = [name for name, count in zip(class_names, counts, strict=True) if count == 0]
    if empty:
        raise LifecycleError(
            f"Class '{empty[0]}' under {root} has no readable image left: add images "
            "to it or remove its folder."
        )


def _worker_context() -> mp.context.BaseContext:
    """forkserver, not fork: the parent may already run torch's thread pools. Workers
    fork from a server that has imported only the decoder, not the caller's modules."""
    if "forkserver" not in mp.get_all_start_methods():
        return mp.get_context("spawn")
    context = mp.get_context("forkserver")
    context.set_forkserver_preload(["model_lifecycle.data.convert"])
    return context


def _decode_all(paths: list[str], size_hw: tuple[int, int], channels: int, resize: str,
                num_workers: int | None, max_pixels: int):
    """Yield (start index, decoded chunk, {global index: reason}) in file order."""
    workers = num_workers or os.cpu_count() or 1
    starts = range(0, len(paths), _CHUNK)
    if workers == 1 or len(paths) < _SERIAL_BELOW:
        for start in starts:
            chunk, errors = decode_files(paths[start:start + _CHUNK], size_hw, channels, resize,
                                         max_pixels)
            yield start, chunk, {start + i: r for i, r in errors.items()}
        return
    pool = ProcessPoolExecutor(max_workers=workers, mp_context=_worker_context())
    # at most two chunks per worker in flight: a decoded chunk is dropped once handed
    # on, so memory stays bounded however many files there are
    pending: deque[tuple[int, Future]] = deque()
    try:
        for start in starts:
            pending.append((start, pool.submit(decode_files, paths[start:start + _CHUNK],
                                               size_hw, channels, resize, max_pixels)))
            if len(pending) >= 2 * workers:
                yield _result(*pending.popleft())
        while pending:
            yield _result(*pending.popleft())
    finally:  # a bad image stops the run: do not decode the rest
        pool.shutdown(wait=True, cancel_futures=True)


def _result(start: int, future: Future) -> tuple[int, np.ndarray, dict[int, str]]:
    chunk, errors = future.result()
    return start, chunk, {start + i: reason for i, reason in errors.items()}
