"""Nodes of the ``adapt`` pipeline."""

from __future__ import annotations

import logging
from typing import Any

import numpy as np
import pandas as pd
from matplotlib.figure import Figure
from torch import nn

from model_lifecycle.data.config import IngestParams
from model_lifecycle.data.imageset import ImageSet
from model_lifecycle.data.splits import checked_splits
from model_lifecycle.errors import LifecycleError
from model_lifecycle.params import parse_params
from model_lifecycle.training.config import RuntimeParams
from model_lifecycle.training.setup import history_for_mlflow, prepare_runtime
from model_lifecycle.training.tta_config import AdaptParams
from model_lifecycle.training.tta_streams import (
    adaptation_figure,
    adaptation_sweep,
    corruption_streams,
    folder_stream,
    hurt_warning,
    mean_errors,
)
from model_lifecycle.variants import variant

log = logging.getLogger(__name__)


def adapt_variant(images: ImageSet, splits: dict[str, np.ndarray], params: dict[str, Any],
                  ingest: dict[str, Any], runtime: dict[str, Any], **models: nn.Module | None
                  ) -> tuple[pd.DataFrame, dict[str, Any], Figure, nn.Module]:
    """Adapt ``adapt.variant`` at test time with each of ``adapt.methods`` on shifted test
    streams (the test split under ``adapt.corruptions`` × ``adapt.severities``, or the
    folder ``adapt.path``): the report (error before and after, seconds, per method and
    stream), the mean errors for MLflow, a bar chart, and the adapted model (TENT's, or
    bn's without tent). The variant's own model is not changed."""
    config = parse_params(AdaptParams, params, "adapt")
    reading = parse_params(IngestParams, ingest, "ingest", context={"reads_files": False})
    device = prepare_runtime(parse_params(RuntimeParams, runtime, "runtime"))
    model = models[config.variant]
    _check_fits(model, config.variant, images)
    if config.path:
        streams = [folder_stream(config.path, images.class_names, images.image_shape, config,
                                 resize=reading.resize, on_bad_image=reading.on_bad_image,
                                 max_pixels=reading.max_pixels,
                                 num_workers=reading.num_workers)]
    else:
        test = checked_splits(images, splits)["test"]
        if len(test) == 0:
            raise LifecycleError("The test split is empty (ingest.splits.test is 0), so "
                                 "there is nothing to corrupt: set ingest.splits.test above "
                                 "0 and run ingest again, or point adapt.path at a folder "
                                 "of your own shifted images.")
        streams = corruption_streams(images.images, images.labels, test, config)
    report, adapted = adaptation_sweep(model, streams, config, device)
    means = mean_errors(report)
    log.info("%s adapted: mean error %s", config.variant,
             ", ".join(f"{k.removesuffix('_error')} {v:.3f}" for k, v in means.items()))
    if hurt := hurt_warning(means):
        log.warning("%s: %s.", config.variant, hurt)
    return report, history_for_mlflow({}, **means), adaptation_figure(report), adapted


def _check_fits(model: nn.Module, name: str, images: ImageSet) -> None:
    """Refuse a variant made from other images than the latest ones: other channels
    would fail in its first layer, other classes would score every prediction against
    renumbered labels."""
    spec = getattr(model, "spec", {})
    dataset, pipeline = variant(name).dataset, variant(name).produced_by
    again = (f"run `kedro run --pipelines={pipeline}` again on these images, or adapt "
             "another variant (adapt.variant)")
    channels = spec.get("in_channels")
    if channels is not None and channels != images.image_shape[0]:
        raise LifecycleError(f"adapt.variant is '{name}' but the latest {dataset} takes "
                             f"{channels} channel(s) and the images have "
                             f"{images.image_shape[0]}: {again}.")
    outputs = getattr(model, "num_classes", None)
    if outputs is not None and outputs != len(images.class_names):
        raise LifecycleError(f"adapt.variant is '{name}' but the latest {dataset} has "
                             f"{outputs} class outputs and the images have "
                             f"{len(images.class_names)} classes: {again}.")
