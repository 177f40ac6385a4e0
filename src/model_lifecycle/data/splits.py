"""Stratified, seeded splits: test, val, train_labeled and train_unlabeled index sets."""

from __future__ import annotations

import logging

import numpy as np
from sklearn.model_selection import train_test_split

from model_lifecycle.data.config import SplitFractions
from model_lifecycle.data.imageset import ImageSet
from model_lifecycle.errors import LifecycleError

log = logging.getLogger(__name__)

SPLIT_NAMES = ("train_labeled", "train_unlabeled", "val", "test")
FINGERPRINT_KEY = "images_fingerprint"


def make_splits(data: ImageSet, fractions: SplitFractions, *, labeled_fraction: float,
                seed: int) -> dict[str, np.ndarray]:
    """Partition ``range(len(data))`` into the four named, disjoint, sorted index arrays.

    ``test`` is the source's own test split when it has one, otherwise a stratified
    ``fractions.test`` of all images. ``val`` is a stratified ``fractions.val`` of
    the rest; ``train_labeled`` a stratified ``labeled_fraction`` of what remains,
    and ``train_unlabeled`` the remainder (its labels are never used for training).
    """
    labels = data.labels
    everything = np.arange(len(labels))
    if data.source_test is not None:
        test, pool = everything[data.source_test], everything[~data.source_test]
        for name in classes_missing_from(test, pool, labels, data.class_names):
            log.warning("The source's own test split holds no image of class '%s': its "
                        "test accuracy cannot be measured (the dataset report lists it).",
                        name)
    else:
        pool, test = _split(everything, labels, fractions.test, seed, "ingest.splits.test",
                            data.class_names)
    train, val = _split(pool, labels, fractions.val, seed + 1, "ingest.splits.val",
                        data.class_names)
    # the held-out side is the unlabeled share: errors speak of the labeled one
    labeled, unlabeled = _split(train, labels, 1.0 - labeled_fraction, seed + 2,
                                "ingest.labeled_fraction", data.class_names,
                                labeled_side=True)
    return {
        "train_labeled": np.sort(labeled),
        "train_unlabeled": np.sort(unlabeled),
        "val": np.sort(val),
        "test": np.sort(test),
        # Ties the splits to the exact images they index (see ``checked_splits``).
        FINGERPRINT_KEY: np.array(data.fingerprint()),
    }


def checked_splits(data: ImageSet, splits: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """The four index arrays, after checking they were made for these very images.

    A run that stopped between saving ``images`` and saving ``splits`` would otherwise
    pair the newest images with older splits.
    """
    made_for = str(splits.get(FINGERPRINT_KEY, ""))
    if made_for != data.fingerprint():
        raise LifecycleError(
            f"The latest splits were made for other images (fingerprint {made_for or 'none'}, "
            f"images are {data.fingerprint()}): run `kedro run --pipelines=ingest` again."
        )
    return {name: splits[name] for name in SPLIT_NAMES}


def classes_missing_from(held: np.ndarray, pool: np.ndarray, labels: np.ndarray,
                         class_names: tuple[str, ...]) -> list[str]:
    """Names of the classes that ``pool`` has and ``held`` has not."""
    return [class_names[c] for c in np.setdiff1d(np.unique(labels[pool]),
                                                 np.unique(labels[held]))]


def _split(indices: np.ndarray, labels: np.ndarray, fraction: float, seed: int, key: str,
           class_names: tuple[str, ...], *, labeled_side: bool = False
           ) -> tuple[np.ndarray, np.ndarray]:
    """Split ``indices`` into (rest, held-out ``fraction``), stratified by label.

    ``labeled_side``: ``key`` names the share kept (1 − ``fraction``), not the one held
    out, and errors quote it that way."""
    if fraction <= 0:
        return indices, indices[:0]
    y = labels[indices]
    present, counts = np.unique(y, return_counts=True)
    n, k = len(indices), len(present)
    held_out = int(np.ceil(fraction * n))
    smallest = int(counts.min())
    if smallest < 2 or min(held_out, n - held_out) < k:
        name = class_names[present[counts.argmin()]]
        shown = 1.0 - fraction if labeled_side else fraction
        problem = (f"both sides must hold every one of the {k} classes and class '{name}' "
                   f"has only {smallest} image(s)")
        if smallest < 2 or n < 2 * k:
            fix = f"add images (at least 2 per class and {2 * k} in all)"
        else:  # enough images: say which values work
            low, high = k / n, (n - k) / n  # held-out share with ≥ k images on each side
            if labeled_side:
                low, high = 1 - high, 1 - low
            fix = f"set {key} between {np.ceil(low * 1000) / 1000:g} and " \
                  f"{np.floor(high * 1000) / 1000:g}" + (" (or 1.0)" if labeled_side else "")
        raise LifecycleError(
            f"Cannot stratify {key} = {shown:g} over {n} images: {problem}; {fix}.")
    rest_idx, held_idx = train_test_split(indices, test_size=held_out, stratify=y,
                                          random_state=seed)
    return np.asarray(rest_idx), np.asarray(held_idx)
