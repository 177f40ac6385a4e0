"""Figures of the evaluation report: confusion matrices, accuracy against latency and
size with the Pareto front, reliability diagrams, accuracy under corruption."""

from __future__ import annotations

from typing import Any

import matplotlib

matplotlib.use("Agg")  # reports are files, never windows
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402


def confusion_matrices_figure(details: dict[str, Any], class_names: list[str]) -> plt.Figure:
    """One row-normalised confusion matrix per variant, side by side."""
    variants = list(details)
    size = max(3.0, 0.35 * len(class_names) + 1.5)
    fig, axes = plt.subplots(1, len(variants), figsize=(size * len(variants), size + 1),
                             layout="constrained", squeeze=False)
    for ax, variant in zip(axes[0], variants, strict=True):
        matrix = np.asarray(details[variant]["confusion_matrix"], dtype=float)
        normalised = matrix / np.maximum(matrix.sum(1, keepdims=True), 1)
        ax.imshow(normalised, vmin=0, vmax=1, cmap="Blues")
        ax.set_title(variant)
        ticks = range(len(class_names))
        ax.set_xticks(ticks, class_names, rotation=90, fontsize=7)
        ax.set_yticks(ticks, class_names, fontsize=7)
        ax.set_xlabel("predicted")
        ax.set_ylabel("true")
    return fig


def tradeoff_figure(report: pd.DataFrame, *, latency_key: str) -> plt.Figure:
    """Test accuracy against latency and against file size; the Pareto front joined."""
    fig, axes = plt.subplots(1, 2, figsize=(11, 4.2), layout="constrained")
    batch = latency_key.split("_")[1].removeprefix("b")
    panels = ((axes[0], latency_key, "pareto_latency", 1.0,
               f"median CPU latency at batch {batch}, ms"),
              (axes[1], "size_bytes", "pareto_size", 1024.0, "file size, KiB"))
    for ax, x_key, front_key, scale, label in panels:
        x = report[x_key] / scale
        ax.scatter(x, 100 * report["accuracy"], s=40, zorder=3)
        for variant, xi, accuracy in zip(report["variant"], x, report["accuracy"],
                                         strict=True):
            ax.annotate(variant, (xi, 100 * accuracy), textcoords="offset points",
                        xytext=(5, 5), fontsize=8)
        front = report[report[front_key]].sort_values(x_key)
        ax.step(front[x_key] / scale, 100 * front["accuracy"], where="post",
                color="tab:red", label="Pareto front", zorder=2)
        if x.max() > 10 * x.min():
            ax.set_xscale("log")
        ax.set_xlabel(label)
        ax.set_ylabel("test accuracy, %")
        ax.grid(alpha=0.3)
        ax.legend(loc="lower right")
    return fig


def reliability_figure(details: dict[str, Any], report: pd.DataFrame) -> plt.Figure:
    """Accuracy against confidence per bin (the diagonal is perfect calibration)."""
    fig, ax = plt.subplots(figsize=(5, 5), layout="constrained")
    ax.plot([0, 1], [0, 1], color="grey", linestyle="--", label="perfectly calibrated")
    ece = dict(zip(report["variant"], report["ece"], strict=True))
    for variant, detail in details.items():
        bins = [b for b in detail["reliability"] if b["count"]]
        ax.plot([b["confidence"] for b in bins], [b["accuracy"] for b in bins], marker="o",
                label=f"{variant} (ECE {ece[variant]:.3f})")
    ax.set_xlabel("confidence")
    ax.set_ylabel("accuracy")
    ax.set_xlim(0, 1)
    ax.set_ylim(0, 1)
    ax.legend(fontsize=8)
    return fig


def robustness_figure(table: pd.DataFrame) -> plt.Figure:
    """Left: each variant's accuracy against corruption severity (mean over corruptions;
    severity 0 is clean). Right: accuracy per variant and corruption (mean over
    severities)."""
    fig, (left, right) = plt.subplots(1, 2, figsize=(13, 4.5), layout="constrained",
                                      width_ratios=(1, 2))
    by_severity = table.groupby(["variant", "severity"], sort=False).accuracy.mean()
    variants = list(dict.fromkeys(table.variant))
    for variant in variants:
        curve = by_severity[variant]
        left.plot(curve.index, curve.values, marker="o", label=variant)
    left.set(xlabel="severity (0: clean)", ylabel="accuracy", ylim=(0, 1.02),
             title="mean over corruptions")
    left.legend(fontsize=8)
    shifted = table[table.severity > 0]
    grid = shifted.pivot_table(index="variant", columns="corruption", values="accuracy",
                               sort=False).reindex(variants)
    image = right.imshow(grid.values, vmin=0, vmax=1, cmap="viridis", aspect="auto")
    right.set_xticks(range(grid.shape[1]), grid.columns, rotation=60, ha="right",
                     fontsize=8)
    right.set_yticks(range(grid.shape[0]), grid.index, fontsize=8)
    for (i, j), value in np.ndenumerate(grid.values):
        right.text(j, i, f"{value:.2f}", ha="center", va="center", fontsize=7,
                   color="white" if value < 0.5 else "black")
    right.set_title("mean over severities")
    fig.colorbar(image, ax=right, label="accuracy")
    return fig
