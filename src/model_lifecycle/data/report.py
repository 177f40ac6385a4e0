"""What was ingested: counts per class and split, image size, source, fingerprint."""

from __future__ import annotations

from typing import Any

import matplotlib

matplotlib.use("Agg")  # reports are files, never windows
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from model_lifecycle.data.imageset import ImageSet  # noqa: E402
from model_lifecycle.data.splits import SPLIT_NAMES, classes_missing_from  # noqa: E402

_SKIPPED_LISTED = 100  # the report names this many skipped files; the count is exact


def dataset_report(data: ImageSet, splits: dict[str, np.ndarray],
                   params: dict[str, Any]) -> dict[str, Any]:
    """A JSON-ready summary of the images and splits."""
    n_classes = len(data.class_names)
    per_split = {
        name: dict(zip(data.class_names,
                       np.bincount(data.labels[splits[name]], minlength=n_classes).tolist(),
                       strict=True))
        for name in SPLIT_NAMES
    }
    channels, height, width = data.image_shape
    return {
        "source": data.source,
        "path": params.get("path"),
        "fingerprint": data.fingerprint(),
        "n_images": len(data),
        "n_classes": n_classes,
        "class_names": list(data.class_names),
        "image_size": [height, width],
        "channels": channels,
        "source_has_test_split": data.source_test is not None,
        "split_sizes": {name: int(len(splits[name])) for name in SPLIT_NAMES},
        # training classes without a test image (a source's own test split can lack some)
        "classes_missing_from_test": classes_missing_from(
            splits["test"], np.concatenate([splits["train_labeled"], splits["val"]]),
            data.labels, data.class_names),
        "counts": per_split,
        "skipped_count": len(data.skipped),
        "skipped": list(data.skipped[:_SKIPPED_LISTED]),
        "params": params,
    }


def ingest_metrics(report: dict[str, Any]) -> dict[str, dict[str, float]]:
    """The report's headline numbers, in the shape kedro-mlflow's metrics dataset logs."""
    values = {"n_images": report["n_images"], "n_classes": report["n_classes"],
              "skipped_images": report["skipped_count"],
              **{f"n_{name}": size for name, size in report["split_sizes"].items()}}
    return {key: {"value": float(value), "step": 0} for key, value in values.items()}


def class_distribution_figure(report: dict[str, Any]) -> plt.Figure:
    """Grouped bars: images per class, one colour per split."""
    classes = report["class_names"]
    x = np.arange(len(classes))
    width = 0.8 / len(SPLIT_NAMES)
    fig, ax = plt.subplots(figsize=(max(6.0, 0.5 * len(classes) + 2), 4), layout="constrained")
    for i, name in enumerate(SPLIT_NAMES):
        counts = [report["counts"][name][c] for c in classes]
        ax.bar(x + (i - (len(SPLIT_NAMES) - 1) / 2) * width, counts, width,
               label=f"{name} ({report['split_sizes'][name]})")
    ax.set_xticks(x, classes, rotation=45 if len(classes) > 12 else 0, ha="right"
                  if len(classes) > 12 else "center")
    ax.set_ylabel("images")
    ax.set_title(f"{report['source']}: {report['n_images']} images, "
                 f"{report['n_classes']} classes (fingerprint {report['fingerprint']})")
    ax.legend()
    return fig
