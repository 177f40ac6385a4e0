"""Class hold-out: novel classes set apart before anything is split or trained on."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from model_lifecycle.data.imageset import ImageSet
from model_lifecycle.data.store import take_rows
from model_lifecycle.errors import LifecycleError

MIN_BASE_CLASSES = 2


def hold_out_classes(data: ImageSet, novel: Sequence[str], *,
                     key: str = "fewshot.novel_classes") -> tuple[ImageSet, ImageSet]:
    """``(base, novel)``: the images of the classes not in ``novel``, labels renumbered
    ``0..B-1`` in the source's class order, and the images of the ``novel`` classes
    (labels ``0..N-1`` in the same order, with the source's test mask).

    Without novel classes ``base`` is ``data`` itself and ``novel`` holds no image, so a
    run without hold-out is the run it always was. ``key`` names the parameter in the
    error sentences (a name the data does not hold; fewer than 2 classes left).
    """
    if not novel:
        return data, _subset(data, np.zeros(len(data), dtype=bool), (), skipped=())
    unknown = [name for name in novel if name not in data.class_names]
    if unknown:
        raise LifecycleError(
            f"{key} names {', '.join(repr(n) for n in unknown)}, which the data does not "
            f"hold: the classes are {', '.join(data.class_names)}.")
    base_names = tuple(n for n in data.class_names if n not in novel)
    if len(base_names) < MIN_BASE_CLASSES:
        raise LifecycleError(
            f"{key} holds out {len(novel)} of the {len(data.class_names)} classes, leaving "
            f"{len(base_names)} to train on: hold out at most "
            f"{len(data.class_names) - MIN_BASE_CLASSES}.")
    novel_names = tuple(n for n in data.class_names if n in novel)
    is_novel = np.isin(data.labels, [data.class_names.index(n) for n in novel_names])
    # the skipped files stay with the base images: the dataset report lists them
    return (_subset(data, ~is_novel, base_names, skipped=data.skipped),
            _subset(data, is_novel, novel_names, skipped=()))


def _subset(data: ImageSet, keep: np.ndarray, names: tuple[str, ...], *,
            skipped: tuple[str, ...]) -> ImageSet:
    """The images where ``keep`` is true, labels renumbered to their index in ``names``
    (copied in chunks: a memory-mapped set gives a memory-mapped subset)."""
    renumber = np.full(len(data.class_names), -1, dtype=np.int64)
    for new, name in enumerate(names):
        renumber[data.class_names.index(name)] = new
    return ImageSet(
        images=take_rows(data.images, np.flatnonzero(keep)),
        labels=renumber[data.labels[keep]],
        class_names=names,
        source=data.source,
        source_test=None if data.source_test is None else data.source_test[keep],
        skipped=skipped,
    )
