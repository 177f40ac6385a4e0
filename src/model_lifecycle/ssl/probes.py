"""How good are the features? k-NN and linear-probe accuracy on frozen features
(scikit-learn classifiers on the encoder's outputs)."""

from __future__ import annotations

import numpy as np
import torch
from sklearn.linear_model import LogisticRegression
from sklearn.neighbors import KNeighborsClassifier
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from model_lifecycle.models.predict import predict


def features(encoder: torch.nn.Module, images: np.ndarray, indices: np.ndarray) -> np.ndarray:
    return predict(encoder, images, indices).numpy()


def knn_accuracy(train_x: np.ndarray, train_y: np.ndarray, test_x: np.ndarray,
                 test_y: np.ndarray, *, k: int = 20) -> float:
    """Cosine-distance k-NN with distance-weighted votes (the usual SSL monitor)."""
    if len(test_y) == 0:
        return float("nan")
    knn = KNeighborsClassifier(n_neighbors=min(k, len(train_y)), metric="cosine",
                               weights="distance")
    return float(knn.fit(train_x, train_y).score(test_x, test_y))


def linear_probe_accuracy(train_x: np.ndarray, train_y: np.ndarray, test_x: np.ndarray,
                          test_y: np.ndarray) -> float:
    """A logistic regression on standardised frozen features."""
    if len(test_y) == 0:
        return float("nan")
    probe = make_pipeline(StandardScaler(), LogisticRegression(max_iter=2000))
    return float(probe.fit(train_x, train_y).score(test_x, test_y))
