"""Nodes of the ``explain`` pipeline."""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd
from matplotlib.figure import Figure
from torch import nn

from model_lifecycle.data.imageset import ImageSet
from model_lifecycle.data.splits import checked_splits
from model_lifecycle.errors import LifecycleError
from model_lifecycle.evaluation.config import EvaluateParams
from model_lifecycle.params import parse_params
from model_lifecycle.pipelines.evaluate.nodes import evaluated_models
from model_lifecycle.trust.config import ExplainParams
from model_lifecycle.trust.explanations import explain_models, explain_sample
from model_lifecycle.variants import baseline


def explain_variants(images: ImageSet, splits: dict[str, np.ndarray], params: dict[str, Any],
                     evaluate: dict[str, Any], **models: nn.Module | None
                     ) -> tuple[pd.DataFrame, dict[str, Any], dict[str, Figure]]:
    """Explain every variant ``evaluate`` evaluates on the same seeded test images (a
    few per class, ``explain.images_per_class``): per variant and method the mean
    deletion and insertion AUC (and a random order's), the drift from the baseline's
    maps; the per-image details; one figure per variant."""
    config = parse_params(ExplainParams, params, "explain")
    chosen = evaluated_models(parse_params(EvaluateParams, evaluate, "evaluate"), models)
    _, height, width = images.image_shape
    if problem := config.constant_occlusion(height, width, "the latest images"):
        raise LifecycleError(problem)
    test = checked_splits(images, splits)["test"]
    sample = explain_sample(images.labels, test, images.class_names, config)
    summary, details, figures = explain_models(chosen, images.images, images.labels, sample,
                                               images.class_names, config,
                                               baseline=baseline().name)
    return summary, details, figures
