"""Nodes of the ``register`` pipeline."""

from __future__ import annotations

from typing import Any

import pandas as pd
from torch import nn

from model_lifecycle.data.config import IngestParams
from model_lifecycle.data.imageset import ImageSet
from model_lifecycle.params import parse_params
from model_lifecycle.serving.config import RegisterParams
from model_lifecycle.serving.registry import register_variants


def register_models(evaluation_report: pd.DataFrame, finetuned_model: nn.Module,
                    pruned_model: nn.Module, quantized_model: nn.Module,
                    distilled_model: nn.Module, images: ImageSet, ingest: dict[str, Any],
                    params: dict[str, Any]) -> dict[str, Any]:
    """Register each evaluated variant with the preprocessing its training data had, so
    the registered model takes raw images; name the baseline and the champion."""
    config = parse_params(RegisterParams, params, "register")
    ingest_config = parse_params(IngestParams, ingest, "ingest")
    channels, height, width = images.image_shape
    preprocessing = {"class_names": list(images.class_names), "channels": channels,
                     "size_hw": [height, width], "resize": ingest_config.resize}
    models = {"finetuned": finetuned_model, "pruned": pruned_model,
              "quantized": quantized_model, "distilled": distilled_model}
    return register_variants(models, evaluation_report, preprocessing, images.images[0],
                             config)
