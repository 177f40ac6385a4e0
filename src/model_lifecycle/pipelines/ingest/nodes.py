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


def load_images(params: dict[str, Any]) -> ImageSet:
    """Read every image of ``ingest.source`` at one size and channel count."""
    config = parse_params(IngestParams, params, "ingest")
    images = load_source(config)
    log.info("Read %d images of %d classes from %s, shape %s", len(images),
             len(images.class_names), config.source, images.image_shape)
    return images


def split_images(images: ImageSet, params: dict[str, Any]) -> dict[str, np.ndarray]:
    """Stratified, seeded test / val / train_labeled / train_unlabeled index sets."""
    config = parse_params(IngestParams, params, "ingest")
    return make_splits(images, config.splits, labeled_fraction=config.labeled_fraction,
                       seed=config.seed)


def report_ingest(images: ImageSet, splits: dict[str, np.ndarray], params: dict[str, Any]
                  ) -> tuple[dict[str, Any], dict[str, dict[str, float]], Figure]:
    """The dataset report, its headline metrics and the class-distribution figure."""
    config = parse_params(IngestParams, params, "ingest")
    report = dataset_report(images, splits, config.model_dump(mode="json"))
    return report, ingest_metrics(report), class_distribution_figure(report)
