"""Nodes of the ``evaluate`` pipeline."""

from __future__ import annotations

import logging
from typing import Any

import numpy as np
import pandas as pd
from matplotlib.figure import Figure
from torch import nn

from model_lifecycle.compression.config import CompressParams
from model_lifecycle.data.imageset import ImageSet
from model_lifecycle.data.splits import checked_splits
from model_lifecycle.evaluation.config import EvaluateParams
from model_lifecycle.evaluation.plots import (
    confusion_matrices_figure,
    reliability_figure,
    tradeoff_figure,
)
from model_lifecycle.evaluation.report import evaluate_model, mark_pareto
from model_lifecycle.params import parse_params
from model_lifecycle.variants import variants

log = logging.getLogger(__name__)
Metrics = dict[str, list[dict[str, float]]]


def evaluate_variants(images: ImageSet, splits: dict[str, np.ndarray],
                      compress: dict[str, Any], params: dict[str, Any],
                      **models: nn.Module | None
                      ) -> tuple[pd.DataFrame, dict[str, Any], Metrics]:
    """One report row per declared variant (``models`` by variant name) on the same test
    images, the details behind each row (per-class report, confusion matrix, reliability
    bins) and the rows as metrics. An optional variant (``evaluated_when``) is a row only
    when its ``evaluate`` flag is set."""
    config = parse_params(EvaluateParams, params, "evaluate")
    compress_config = parse_params(CompressParams, compress, "compress")
    test = checked_splits(images, splits)["test"]
    rows, details = [], {}
    for variant in variants():
        model = models.get(variant.name)
        wanted = not variant.evaluated_when or getattr(config, variant.evaluated_when)
        if wanted and variant.name not in models:
            log.warning("evaluate.%s is set but this run does not read %s: run `kedro run "
                        "--pipelines=evaluate` to include it.", variant.evaluated_when,
                        variant.dataset)
        if model is None or not wanted:
            continue
        row, details[variant.name] = evaluate_model(model, images.images, images.labels,
                                                    test, images.class_names, config)
        rows.append({"variant": variant.name, "method": variant.method_text(compress_config),
                     **row})
        log.info("%s: test accuracy %.2f%%, %.2f ms at batch 1", variant.name,
                 100 * row["accuracy"], row["latency_b1_p50_ms"])
    mark_pareto(rows, latency_key=_latency_key(config))
    report = pd.DataFrame(rows)
    metrics = {f"{row['variant']}.{key}": [{"step": 0, "value": float(value)}]
               for row in rows for key, value in row.items()
               if isinstance(value, float)}
    return report, {"class_names": list(images.class_names), "variants": details}, metrics


def plot_evaluation(evaluation_report: pd.DataFrame, evaluation_details: dict[str, Any],
                    params: dict[str, Any]) -> tuple[Figure, Figure, Figure]:
    """Confusion matrices, accuracy against latency and size (Pareto front), reliability."""
    config = parse_params(EvaluateParams, params, "evaluate")
    variants = evaluation_details["variants"]
    return (confusion_matrices_figure(variants, evaluation_details["class_names"]),
            tradeoff_figure(evaluation_report, latency_key=_latency_key(config)),
            reliability_figure(variants, evaluation_report))


def _latency_key(config: EvaluateParams) -> str:
    return f"latency_b{max(config.latency.batch_sizes)}_p50_ms"
