"""Nodes of the ``ingest`` pipeline."""

from __future__ import annotations

import logging
from typing import Any

import numpy as np
from matplotlib.figure import Figure

from model_lifecycle.data.config import IngestParams
from model_lifecycle.data.imageset import ImageSet
from model_lifecycle.data.report import (
    class_distribution_figure,
    dataset_report,
    ingest_metrics,
)
from model_lifecycle.data.sources import load_source
from model_lifecycle.data.splits import make_splits
from model_lifecycle.params import parse_params

log = logging.getLogger(__name__)


def ingest_images(params: dict[str, Any]) -> tuple[ImageSet, dict[str, np.ndarray]]:
    """Read every image of ``ingest.source`` at one size and channel count, and split them
    (stratified, seeded test / val / train_labeled / train_unlabeled index sets).

    One node, so that a split that cannot be made stops the run before ``images`` is
    saved: the latest ``images`` and ``splits`` always belong together.
    """
    config = parse_params(IngestParams, params, "ingest")
    images = load_source(config)
    log.info("Read %d images of %d classes from %s, shape %s", len(images),
             len(images.class_names), config.source, images.image_shape)
    splits = make_splits(images, config.splits, labeled_fraction=config.labeled_fraction,
                         seed=config.seed)
    return images, splits


def report_ingest(images: ImageSet, splits: dict[str, np.ndarray], params: dict[str, Any]
                  ) -> tuple[dict[str, Any], dict[str, dict[str, float]], Figure]:
    """The dataset report, its headline metrics and the class-distribution figure."""
    config = parse_params(IngestParams, params, "ingest")
    report = dataset_report(images, splits, config.model_dump(mode="json"))
    return report, ingest_metrics(report), class_distribution_figure(report)
