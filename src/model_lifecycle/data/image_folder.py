"""Images in class folders: ``<root>/<class>/<image>`` or
``<root>/{train,val,test}/<class>/<image>`` (images in sub-folders of a class folder
belong to that class).

Decoding runs in worker processes, a chunk of files each, and every image lands
in one preallocated uint8 array (a memory-mapped file for a set larger than
``data.store.IN_MEMORY_BYTES``): no per-image files, no per-image tensors.
"""

from __future__ import annotations

import logging
import multiprocessing as mp
import os
import unicodedata
from collections import deque
from concurrent.futures import Future, ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from model_lifecycle.data.convert import (
    IMAGE_SUFFIXES,
    MAX_PIXELS,
    decode_files,
    never_an_image,
)
from model_lifecycle.data.imageset import ImageSet
from model_lifecycle.data.store import IN_MEMORY_BYTES, PixelSink
from model_lifecycle.errors import LifecycleError

log = logging.getLogger(__name__)

_CHUNK = 1024  # files per worker task: large enough to amortise the IPC
_SERIAL_BELOW = 2048  # fewer files than this decode in-process (no pool start-up)
_ARCHIVES = (".zip", ".tar", ".tar.gz", ".tgz", ".tar.bz2", ".tar.xz", ".7z", ".rar")


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
        read = 0
        for start, chunk, errors in _decode_all(paths, size_hw, channels, resize,
                                                num_workers, max_pixels):
            failures.update(errors)
            read = start + len(chunk)  # (chunks come in file order)
            if failures and on_bad_image == "error":
                break  # the bad files of this chunk, named together; not hours more decoding
            readable = np.ones(len(chunk), dtype=bool)
            if errors:  # skipped files leave no row: the rows stay in file order
                readable[[index - start for index in errors]] = False
            sink.append(chunk[readable] if errors else chunk)
        if failures and on_bad_image == "error":
            raise LifecycleError(_bad_images_sentence(paths, failures, read))
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


# Split folders of a <root>/<split>/<class>/<image> layout, under the names data sets ship
# them with (case, spaces and hyphens aside: Training/Testing, training_set/test_set, …).
# A validation folder joins the training images: ingest draws its own val split
# (ingest.splits.val) from them.
TRAIN, TEST, VALIDATION = "train", "test", "val"
_SPLITS = {
    **dict.fromkeys(("train", "training", "train_set", "training_set", "trainset"), TRAIN),
    **dict.fromkeys(("test", "testing", "test_set", "testing_set", "testset"), TEST),
    **dict.fromkeys(("val", "valid", "validation", "val_set", "valid_set",
                     "validation_set"), VALIDATION),
}


def split_of(name: str) -> str | None:
    """The split a folder's name stands for (``train``, ``test``, ``val``), or None."""
    return _SPLITS.get(name.lower().replace("-", "_").replace(" ", "_"))


def _scan(root: Path) -> tuple[list[_Entry], tuple[str, ...], bool]:
    if not root.is_dir():
        hint = (" is an archive: extract it and point ingest.path at the folder it holds"
                if root.is_file() and root.name.lower().endswith(_ARCHIVES) else
                " is not a folder: point it at a folder laid out as <root>/<class>/<image> "
                "or <root>/train|test/<class>/<image>")
        raise LifecycleError(f"ingest.path {root}{hint}.")
    subdirs = {_name(p): p for p in _visible(root) if p.is_dir()}
    # <root>/train[/val][/test]/<class>/<image>: a folder holding only split folders is a
    # split layout, never a data set with classes named "train" and "test"
    splits = _split_folders(root, subdirs)
    has_test = TEST in splits.values()
    parts = ([(subdirs[name], split == TEST) for name, split in sorted(splits.items())]
             if splits else [(root, False)])
    train_dir = subdirs[next(n for n, s in splits.items() if s == TRAIN)] if splits else root
    class_dirs = {_name(p): p for p in _visible(train_dir) if p.is_dir()}
    class_names = tuple(sorted(class_dirs))
    if not class_names:
        raise LifecycleError(
            f"{train_dir} holds no class folders: lay images out as "
            f"{train_dir}/<class>/<image> (at least two classes)."
        )
    if len(class_names) == 1:
        _refuse_a_wrapping_folder(root, class_dirs[class_names[0]])
    if not splits:
        _warn_of_unnamed_splits(root, class_dirs)
    index = {name: i for i, name in enumerate(class_names)}
    entries: list[_Entry] = []
    ignored: list[Path] = []
    nested = 0
    for part, is_test in parts:
        _refuse_loose_images(part)
        if part is not train_dir and split_of(part.name) == VALIDATION:
            log.info("%s: its images join the training images (ingest draws the val "
                     "split, ingest.splits.val)", part)
        for class_dir in sorted(p for p in _visible(part) if p.is_dir()):
            if _name(class_dir) not in index:
                raise LifecycleError(
                    f"Class folder {class_dir} has no matching folder in {train_dir}: "
                    "rename it to one of the training classes or add training images for it."
                )
            files, skipped = files_under(class_dir)
            ignored += skipped
            nested += sum(f.parent != class_dir for f in files)
            if not files and not is_test:
                raise LifecycleError(
                    f"Class folder {class_dir} holds no image files: add images to it or "
                    "remove it."
                )
            entries += [_Entry(f, index[_name(class_dir)], is_test) for f in files]
    if nested:
        log.info("%d image file(s) in sub-folders of class folders under %s: each labelled "
                 "with its class folder", nested, root)
    if ignored:
        log.info("Left out %d file(s) that are not images under %s, e.g. %s", len(ignored),
                 root, ignored[0])
    return entries, class_names, has_test


def _split_folders(root: Path, subdirs: dict[str, Path]) -> dict[str, str]:
    """Folder name → split of a split layout (empty: ``root`` holds class folders). A
    folder is a split when it is named like one and holds folders, not images (a class
    may be called `train` or `valid`: its folder holds images). A split beside folders
    that are no split is refused: those are not classes."""
    named = {name: split for name in subdirs if (split := split_of(name))}
    splits = {name: split for name, split in named.items() if _holds_folders(subdirs[name])}
    if not splits:
        if named:
            log.warning("%s: the folder(s) %s, named like a split of a data set, are read "
                        "as classes (they hold images). If they are splits, lay the images "
                        "out as %s/train/<class>/<image> (and test/ beside it).", root,
                        ", ".join(sorted(named)), root)
        return {}
    others = sorted(set(subdirs) - set(named))
    if others or TRAIN not in splits.values():
        beside = (f"beside {', '.join(repr(n) for n in others[:3])}, which "
                  f"{'is' if len(others) == 1 else 'are'} not a split name" if others
                  else "but no training folder")
        raise LifecycleError(
            f"{root} holds the split folder(s) {', '.join(repr(n) for n in sorted(splits))} "
            f"{beside}: lay the images out as {root}/train/<class>/<image> (and test/ or "
            "val/ beside it), or, if these folders are your classes, put their images "
            "directly in them."
        )
    for split in set(named.values()):
        same = sorted(name for name, s in named.items() if s == split)
        if len(same) > 1:
            raise LifecycleError(
                f"{root} holds {len(same)} folders for one split ({', '.join(same)}): "
                "merge them into one."
            )
    return named


def _holds_folders(folder: Path) -> bool:
    """Whether ``folder`` holds visible folders and no image file of its own."""
    folders = False
    with os.scandir(folder) as entries:
        for entry in entries:
            if _hidden(entry.name):
                continue
            if entry.is_dir():
                folders = True
            elif Path(entry.name).suffix.lower() in IMAGE_SUFFIXES:
                return False
    return folders


def _warn_of_unnamed_splits(root: Path, class_dirs: dict[str, Path]) -> None:
    """Class folders that all hold the same folders and no images of their own are most
    likely splits under names ingest does not know (``fold1``/``fold2``, ``A``/``B``)."""
    if len(class_dirs) < 2 or not all(_holds_folders(d) for d in class_dirs.values()):
        return  # (stops at the first class folder holding an image: no full listing)
    folders = {frozenset(_name(p) for p in _visible(d) if p.is_dir())
               for d in class_dirs.values()}
    if len(folders) == 1 and len(next(iter(folders))) >= 2:
        log.warning(
            "The class folders %s under %s each hold the same folders (%s): they are read "
            "as %d classes named after them. If they are splits of one data set, name them "
            "train, val and test.", ", ".join(sorted(class_dirs)), root,
            ", ".join(sorted(next(iter(folders)))[:5]), len(class_dirs))


def _name(folder: Path) -> str:
    """A folder's name as a class name: Unicode NFC, so that a name written decomposed
    (as macOS archives do) and one written composed are one class."""
    return unicodedata.normalize("NFC", folder.name)


def files_under(folder: Path) -> tuple[list[Path], list[Path]]:
    """Every file under ``folder`` (sub-folders too, symbolic links followed, hidden
    entries skipped), in name order, and those of them left out as not images. A link to
    nothing is kept: it fails to decode, which names it."""
    files, ignored, seen = [], [], set()

    def unreadable(error: OSError) -> None:
        raise LifecycleError(f"Cannot read the folder {error.filename} ({error.strerror}): "
                             "give this user read access to it or move it out of "
                             f"{folder.parent}.")

    for current, dirs, names in os.walk(folder, followlinks=True, onerror=unreadable):
        real = os.path.realpath(current)
        if real in seen:  # a link back up the tree
            dirs[:] = []
            continue
        seen.add(real)
        dirs[:] = sorted(d for d in dirs if not _hidden(d))
        for name in sorted(names):
            path = Path(current, name)
            if _hidden(name):
                continue
            if never_an_image(path):
                ignored.append(path)
            elif path.is_file() or (path.is_symlink() and not path.exists()):
                files.append(path)  # not a pipe, socket or device, which would block
    return sorted(files), ignored


def _refuse_a_wrapping_folder(root: Path, only: Path) -> None:
    """One class folder that itself holds only folders is, most likely, the data set one
    level down (an archive unpacked into a folder of its own)."""
    inner = [p for p in _visible(only) if p.is_dir()]
    if len(inner) >= 2 and not any(p.is_file() for p in _visible(only)):
        raise LifecycleError(
            f"{root} holds one folder, {only.name}, which holds the folders "
            f"{', '.join(sorted(p.name for p in inner)[:5])}: if those are your classes, "
            f"point ingest.path at {only}."
        )


def _visible(folder: Path) -> list[Path]:
    """Folder entries, without hidden files such as .DS_Store or the __MACOSX folder a
    Mac archive leaves."""
    return [p for p in folder.iterdir() if not _hidden(p.name)]


def _hidden(name: str) -> bool:
    return name.startswith(".") or name == "__MACOSX"


def _refuse_loose_images(folder: Path) -> None:
    loose = sorted(p for p in _visible(folder)
                   if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)
    if loose:
        raise LifecycleError(
            f"Image {loose[0]} is not inside a class folder: move it to "
            f"{folder}/<class>/{loose[0].name}."
        )


def _bad_images_sentence(paths: list[str], failures: dict[int, str], read: int) -> str:
    """The unreadable files among the first ``read`` of ``paths`` (decoding stops at the
    first chunk with one: the rest may hold more)."""
    first = sorted(failures.items())[:3]
    named = "; ".join(f"{paths[index]} ({reason})" for index, reason in first)
    if len(failures) == 1 and read >= len(paths):
        return (f"Cannot read image {named}: replace or delete the file, or set "
                "ingest.on_bad_image: skip to leave such files out.")
    more = f", and {len(failures) - len(first)} more" if len(failures) > len(first) else ""
    among = (f"the {len(paths)} image files" if read >= len(paths) else
             f"the first {read} of {len(paths)} image files (the rest not read yet)")
    return (f"Cannot read {len(failures)} of {among}: {named}{more}: replace or delete "
            "them, or set ingest.on_bad_image: skip to leave such files out (the dataset "
            "report then lists them).")


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
