"""The numbers logged for every model variant: accuracy, cost, size, latency."""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from model_lifecycle.evaluation.config import LatencyParams
from model_lifecycle.evaluation.cost import file_size_bytes, latencies_ms, parameter_count
from model_lifecycle.models.predict import accuracy
from model_lifecycle.models.structure import cost


def describe(model: nn.Module, images: np.ndarray, labels: np.ndarray,
             splits: dict[str, np.ndarray], latency: LatencyParams, *,
             float_source: nn.Module | None = None) -> dict[str, float]:
    """Accuracy on val and test, parameters and MACs (of ``float_source`` for a quantized
    model), file size in bytes, and median CPU latency per batch size."""
    example = torch.from_numpy(images[:1]).float() / 255
    counted = float_source if float_source is not None else model
    out = {
        "val_accuracy": accuracy(model, images, labels, splits["val"]),
        "test_accuracy": accuracy(model, images, labels, splits["test"]),
        "params": float(parameter_count(counted)),
        "macs": cost(counted, example)["macs"],
        "size_bytes": float(file_size_bytes(model)),
    }
    for batch, timing in latencies_ms(model, example, latency).items():
        out[f"latency_b{batch}_ms"] = timing["median"]
    return out
