"""Few-shot accuracy of encoders on held-out classes: every encoder answers the same
seeded N-way K-shot episodes with the Prototypical Networks head on its frozen features;
the 95% confidence interval is 1.96 · std / √episodes, as the few-shot literature reports
it."""

from __future__ import annotations

import math

import matplotlib

matplotlib.use("Agg")  # reports are files, never windows
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import torch  # noqa: E402
from torch import nn  # noqa: E402

from model_lifecycle.models.predict import predict  # noqa: E402
from model_lifecycle.models.protonet import episode_accuracies  # noqa: E402

COLUMNS = ("encoder", "way", "shot", "accuracy", "ci95", "episodes")


def encoder_features(encoder: nn.Module, images: np.ndarray, *, l2: bool = False
                     ) -> torch.Tensor:
    """Features N×D of every image (eval mode, no augmentation), on the CPU; ``l2``:
    scaled to unit length."""
    features = predict(encoder, images, np.arange(len(images)))
    return torch.nn.functional.normalize(features, dim=1) if l2 else features


def accuracy_with_interval(accuracies: np.ndarray) -> tuple[float, float]:
    """Mean accuracy and the half-width of its 95% interval, 1.96 · std / √n."""
    n = len(accuracies)
    return float(np.mean(accuracies)), float(1.96 * np.std(accuracies) / math.sqrt(n))


def fewshot_rows(name: str, features: torch.Tensor, episodes: dict[int, np.ndarray]
                 ) -> list[dict]:
    """One report row per shot: ``episodes`` maps a shot count to its E×W×(S+Q) positions
    into ``features``."""
    rows = []
    for shot, drawn in episodes.items():
        scores = episode_accuracies(features, torch.from_numpy(drawn), shot=shot).numpy()
        accuracy, ci95 = accuracy_with_interval(scores)
        rows.append({"encoder": name, "way": drawn.shape[1], "shot": shot,
                     "accuracy": accuracy, "ci95": ci95, "episodes": len(drawn)})
    return rows


def fewshot_figure(report: pd.DataFrame) -> plt.Figure:
    """Accuracy per encoder, one bar per shot count, the 95% interval as error bars."""
    fig, ax = plt.subplots(figsize=(1.8 + 1.4 * max(1, report["encoder"].nunique()), 3.8),
                           layout="constrained")
    encoders = list(dict.fromkeys(report["encoder"]))
    shots = sorted(report["shot"].unique())
    width = 0.8 / max(1, len(shots))
    for i, shot in enumerate(shots):
        rows = report[report["shot"] == shot].set_index("encoder").reindex(encoders)
        x = np.arange(len(encoders)) + (i - (len(shots) - 1) / 2) * width
        ax.bar(x, 100 * rows["accuracy"], width, yerr=100 * rows["ci95"], capsize=3,
               label=f"{shot}-shot")
    if len(report):
        way = int(report["way"].iloc[0])
        ax.axhline(100 / way, color="grey", linestyle=":", label="chance")
        ax.set_title(f"{way}-way accuracy on the novel classes "
                     f"({int(report['episodes'].iloc[0])} episodes)")
    ax.set_xticks(range(len(encoders)), encoders)
    ax.set_ylabel("query accuracy, % (95% interval)")
    ax.set_ylim(0, 100)
    ax.grid(axis="y", alpha=0.3)
    ax.legend(loc="upper left", fontsize=8)
    return fig


def fewshot_metrics(report: pd.DataFrame) -> dict[str, list[dict[str, float]]]:
    """The report as MLflow metric histories: ``<encoder>.<way>way_<shot>shot.accuracy``
    and ``.ci95``."""
    metrics = {}
    for row in report.itertuples():
        key = f"{row.encoder}.{row.way}way_{row.shot}shot"
        metrics[f"{key}.accuracy"] = [{"step": 0, "value": float(row.accuracy)}]
        metrics[f"{key}.ci95"] = [{"step": 0, "value": float(row.ci95)}]
    return metrics
