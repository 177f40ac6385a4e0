"""Expected calibration error and the reliability diagram's bins.

Hand-written: scikit-learn's ``calibration_curve`` covers binary classifiers only and
computes no ECE. This is the top-label ECE of Guo et al., "On Calibration of Modern
Neural Networks" (ICML 2017), with equal-width confidence bins.
"""

from __future__ import annotations

from typing import Any

import numpy as np


def reliability(labels: np.ndarray, probabilities: np.ndarray, *,
                bins: int = 15) -> dict[str, Any]:
    """``{"ece": float, "bins": [{"lower", "upper", "count", "confidence", "accuracy"}]}``.

    Each prediction falls in the bin of its top probability; ECE is the count-weighted
    mean gap |accuracy − confidence| over the bins.
    """
    if bins < 1:
        raise ValueError(f"bins must be ≥ 1, got {bins}")
    confidence = probabilities.max(1)
    correct = probabilities.argmax(1) == labels
    edges = np.linspace(0.0, 1.0, bins + 1)
    # right-closed bins, (lower, upper]; a confidence of exactly 0 joins the first
    which = np.clip(np.searchsorted(edges, confidence, side="left") - 1, 0, bins - 1)
    table, ece = [], 0.0
    for b in range(bins):
        members = which == b
        count = int(members.sum())
        conf = float(confidence[members].mean()) if count else float("nan")
        acc = float(correct[members].mean()) if count else float("nan")
        if count:
            ece += count / len(labels) * abs(acc - conf)
        table.append({"lower": float(edges[b]), "upper": float(edges[b + 1]),
                      "count": count, "confidence": conf, "accuracy": acc})
    return {"ece": float(ece), "bins": table}
