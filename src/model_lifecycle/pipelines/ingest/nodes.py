"""Nodes of the ``ingest`` pipeline."""

from __future__ import annotations

import logging
from typing import Any

import numpy as np
from matplotlib.figure import Figure

from model_lifecycle.data.config import IngestParams
from model_lifecycle.data.episodes import check_episodes
from model_lifecycle.data.holdout import hold_out_classes
from model_lifecycle.data.imageset import ImageSet
from model_lifecycle.data.report import (
    class_distribution_figure,
    dataset_report,
    ingest_metrics,
)
from model_lifecycle.data.sources import load_source
from model_lifecycle.data.splits import SPLIT_NAMES, make_splits
from model_lifecycle.errors import LifecycleError
from model_lifecycle.params import parse_params
from model_lifecycle.training.fewshot_config import META_KEYS, MORE_LABELED, FewshotParams

log = logging.getLogger(__name__)


def ingest_images(params: dict[str, Any], fewshot: dict[str, Any] | None = None
                  ) -> tuple[ImageSet, dict[str, np.ndarray], ImageSet]:
    """Read every image of ``ingest.source`` at one size and channel count, set the
    classes of ``fewshot.novel_classes`` apart, and split the rest (stratified, seeded
    test / val / train_labeled / train_unlabeled index sets).

    Returns the images every training stage sees (the base classes), their splits and the
    held-out novel images (none without hold-out). One node, so that a split that cannot
    be made stops the run before ``images`` is saved: the latest ``images``, ``splits``
    and ``novel_images`` always belong together.
    """
    return _ingest(params, fewshot, source=False)


def ingest_source_images(params: dict[str, Any], fewshot: dict[str, Any] | None = None
                         ) -> tuple[ImageSet, dict[str, np.ndarray], ImageSet]:
    """:func:`ingest_images` of the ``transfer`` pipeline's source data set: of
    ``fewshot.novel_classes`` (the project's own classes), those the source holds too are
    set apart, so that pretraining never sees them; the others are not the source's."""
    return _ingest(params, fewshot, source=True)


def _ingest(params: dict[str, Any], fewshot: dict[str, Any] | None, *, source: bool
            ) -> tuple[ImageSet, dict[str, np.ndarray], ImageSet]:
    config = parse_params(IngestParams, params, "ingest")
    holdout = parse_params(FewshotParams, fewshot, "fewshot")
    images = load_source(config)
    log.info("Read %d images of %d classes from %s, shape %s", len(images),
             len(images.class_names),
             f"{config.path} ({images.source})" if config.path else images.source,
             images.image_shape)
    if source:
        held = [name for name in holdout.novel_classes if name in images.class_names]
        images, novel = hold_out_classes(images, held, key="fewshot.novel_classes (in the "
                                         "source data set, source.ingest)")
    else:
        images, novel = hold_out_classes(images, holdout.novel_classes)
    if len(novel.class_names) and not source:
        # episodes that cannot be filled are refused now, not after hours of training
        for shot in sorted(holdout.shots, reverse=True):  # the most demanding first
            check_episodes(novel.labels, novel.class_names, way=holdout.way, shot=shot,
                           queries=holdout.queries, pool="novel",
                           keys=("fewshot.way", "fewshot.shots", "fewshot.queries"))
    if len(novel.class_names):
        log.info("Held out %d images of %d novel classes (%s); %d images of %d base "
                 "classes remain", len(novel), len(novel.class_names),
                 ", ".join(novel.class_names), len(images), len(images.class_names))
    splits = make_splits(images, config.splits, labeled_fraction=config.labeled_fraction,
                         seed=config.seed)
    if len(novel.class_names) and not source and "meta_trained" in holdout.encoders:
        # said now, not after pretraining and fine-tuning (a run that meta-trains later,
        # or not at all, may still use these images: a warning, not a refusal)
        meta = holdout.meta_train
        try:
            check_episodes(images.labels[splits["train_labeled"]], images.class_names,
                           way=meta.way, shot=meta.shot, queries=meta.queries,
                           keys=META_KEYS, pool="train_labeled", more=MORE_LABELED)
        except LifecycleError as refused:
            log.warning("Meta-training (fewshot.encoders lists meta_trained) will be refused "
                        "on these images: %s", refused)
    sizes = {name: len(splits[name]) for name in SPLIT_NAMES}
    log.info("Split: %d test, %d val, %d training images, %d of them with their labels "
             "(train_labeled: ingest.labeled_fraction %g) and %d without (train_unlabeled, "
             "for pretraining)", sizes["test"], sizes["val"],
             sizes["train_labeled"] + sizes["train_unlabeled"], sizes["train_labeled"],
             config.labeled_fraction, sizes["train_unlabeled"])
    return images, splits, novel


def report_ingest(images: ImageSet, splits: dict[str, np.ndarray], params: dict[str, Any],
                  novel: ImageSet | None = None
                  ) -> tuple[dict[str, Any], dict[str, dict[str, float]], Figure]:
    """The dataset report, its headline metrics and the class-distribution figure; with
    held-out classes the report also counts their images (``novel_classes``)."""
    config = parse_params(IngestParams, params, "ingest")
    report = dataset_report(images, splits, config.model_dump(mode="json"))
    if novel is not None and len(novel.class_names):
        report["novel_classes"] = dict(zip(
            novel.class_names, np.bincount(novel.labels,
                                           minlength=len(novel.class_names)).tolist(),
            strict=True))
    return report, ingest_metrics(report), class_distribution_figure(report)
