"""One row of the evaluation report: a model variant measured on the test split."""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from torch import nn

from model_lifecycle.evaluation.calibration import reliability
from model_lifecycle.evaluation.config import EvaluateParams
from model_lifecycle.evaluation.cost import file_size_bytes, latencies_ms, parameter_count
from model_lifecycle.evaluation.metrics import classification_metrics
from model_lifecycle.evaluation.pareto import pareto_front
from model_lifecycle.models.predict import predict
from model_lifecycle.models.registry import build_from_spec
from model_lifecycle.models.structure import cost, float_shell, sparsity


def float_counterpart(model: nn.Module) -> nn.Module:
    """The model whose parameters and MACs are counted: a quantized model is counted as
    its float architecture (same layer sizes), anything else as itself."""
    if getattr(model, "quantization", None):
        return float_shell(build_from_spec(model.spec), model.layer_sizes)
    return model


def evaluate_model(model: nn.Module, images: np.ndarray, labels: np.ndarray,
                   indices: np.ndarray, class_names: tuple[str, ...],
                   params: EvaluateParams,
                   latency: dict[int, dict[str, float]] | None = None
                   ) -> tuple[dict[str, float], dict[str, Any]]:
    """Quality, calibration and cost of ``model`` on ``images[indices]``; ``latency``:
    its timings when measured already (:func:`~model_lifecycle.evaluation.cost.
    side_by_side_latencies_ms`), else it is timed here.

    Returns the report row (numbers only) and the details (per-class report,
    confusion matrix, reliability bins) that do not fit in a row.
    """
    probabilities = torch.softmax(predict(model, images, indices), 1).numpy()
    truth = labels[indices]
    quality = classification_metrics(truth, probabilities, class_names, top_k=params.top_k)
    calibration = reliability(truth, probabilities, bins=params.calibration_bins)
    example = torch.from_numpy(images[:1]).float() / 255
    counted = float_counterpart(model)
    row = {key: value for key, value in quality.items() if isinstance(value, float)}
    row |= {"ece": calibration["ece"], "test_images": float(len(indices)),
            "params": float(parameter_count(counted)), "macs": cost(counted, example)["macs"],
            "size_bytes": float(file_size_bytes(model)),
            # zeroed weights (unstructured pruning): what a compressed file saves
            "sparsity": sparsity(model)}
    if latency is None:
        latency = latencies_ms(model, example, params.latency)
    for batch, timing in latency.items():
        row[f"latency_b{batch}_p50_ms"] = timing["median"]
        row[f"latency_b{batch}_p95_ms"] = timing["p95"]
    largest = max(params.latency.batch_sizes)
    row["throughput_images_per_s"] = largest / (row[f"latency_b{largest}_p50_ms"] / 1000)
    details = {"per_class": quality["per_class"],
               "confusion_matrix": quality["confusion_matrix"],
               "reliability": calibration["bins"]}
    return row, details


def mark_pareto(rows: list[dict[str, Any]], *, latency_key: str) -> None:
    """Add ``pareto_latency`` and ``pareto_size`` (bool) to each row, in place."""
    accuracies = [row["accuracy"] for row in rows]
    for key, cost_key in (("pareto_latency", latency_key), ("pareto_size", "size_bytes")):
        for row, on_front in zip(rows, pareto_front([r[cost_key] for r in rows], accuracies),
                                 strict=True):
            row[key] = on_front
