"""Classification quality of one model's predicted probabilities, with scikit-learn."""

from __future__ import annotations

from typing import Any

import numpy as np
from sklearn.metrics import (
    accuracy_score,
    classification_report,
    confusion_matrix,
    precision_recall_fscore_support,
    top_k_accuracy_score,
)


def classification_metrics(labels: np.ndarray, probabilities: np.ndarray,
                           class_names: tuple[str, ...] | list[str], *,
                           top_k: int = 3) -> dict[str, Any]:
    """Accuracy, macro precision / recall / F1, top-``top_k`` accuracy, the per-class
    report and the confusion matrix (rows: true class, columns: predicted class).

    ``probabilities`` is N×K with K = ``len(class_names)``; ``labels`` holds N class indices.
    """
    classes = np.arange(len(class_names))
    predicted = probabilities.argmax(1)
    precision, recall, f1, _ = precision_recall_fscore_support(
        labels, predicted, labels=classes, average="macro", zero_division=0)
    if top_k >= len(classes):  # every class is among the top k: scikit-learn warns
        top = 1.0
    else:
        scores = probabilities[:, 1] if len(classes) == 2 else probabilities
        top = top_k_accuracy_score(labels, scores, k=top_k, labels=classes)
    return {
        "accuracy": float(accuracy_score(labels, predicted)),
        "precision_macro": float(precision),
        "recall_macro": float(recall),
        "f1_macro": float(f1),
        f"top{top_k}_accuracy": float(top),
        "per_class": classification_report(labels, predicted, labels=classes,
                                           target_names=list(class_names),
                                           output_dict=True, zero_division=0),
        "confusion_matrix": confusion_matrix(labels, predicted, labels=classes).tolist(),
    }


def guessing_accuracy(labels: np.ndarray, accuracy: float) -> float | None:
    """The accuracy of always answering the most frequent class of ``labels`` when
    ``accuracy`` is not clearly above it (within two binomial standard errors of it on
    this many images: a model that learnt nothing), else None."""
    guess = float(np.bincount(labels).max() / len(labels))
    margin = 2 * np.sqrt(guess * (1 - guess) / len(labels))
    return guess if accuracy <= guess + margin else None
