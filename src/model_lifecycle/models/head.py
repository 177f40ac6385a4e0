"""A classifier head that starts as a linear probe: the first half of LP-FT (Kumar et al.
2022, "Fine-Tuning can Distort Pretrained Features and Underperform Out-of-Distribution",
https://arxiv.org/abs/2202.10054).

A randomly initialised head sends large, random gradients into a pretrained encoder for
the first epochs and distorts its features before the head has learned anything; it also
learns slowly when the features vary little around a large common vector (a SimCLR ViT's
pooled tokens: per-feature spread 0.03 against a norm of 14). Fitting the head first on
the frozen features — a multinomial logistic regression on standardised features, which
scikit-learn solves to its optimum in a second — gives fine-tuning a starting point at the
probe's accuracy. The standardisation is folded into the head's weights, so the model
keeps its plain ``nn.Linear`` head (pruning, INT8, ONNX and serving see nothing new).
"""

from __future__ import annotations

import numpy as np
import torch

from model_lifecycle.models.classifier import Classifier
from model_lifecycle.models.predict import predict

MISSING_CLASS_LOGIT = -20.0  # a class train_labeled lacks starts 20 nats below the others
PROBE_IMAGES = 20_000  # at most this many images (seeded) fit the probe: seconds, not minutes


def probe_head(model: Classifier, images: np.ndarray, labels: np.ndarray,
               indices: np.ndarray, *, seed: int = 0, max_images: int = PROBE_IMAGES,
               max_iter: int = 2000) -> float:
    """Set ``model.head`` to the logistic regression fitted on the frozen encoder's
    features of ``images[indices]`` (a seeded sample of ``max_images`` of them when there
    are more); return the probe's accuracy on the images it was fitted on.

    The head's logits equal the fitted pipeline's ``decision_function`` (up to float
    rounding); a two-class fit (one logit in scikit-learn) becomes ``[-z/2, z/2]``, the
    same probabilities under a softmax. Classes absent from ``indices`` get zero weights
    and a bias ``MISSING_CLASS_LOGIT`` below the lowest fitted one.
    """
    indices = np.asarray(indices)
    if len(indices) > max_images:
        indices = np.sort(np.random.default_rng(seed).choice(indices, max_images,
                                                             replace=False))
    features = predict(model.encoder, images, indices).numpy().astype(np.float64)
    targets = np.asarray(labels)[indices]
    # imported here: scikit-learn takes most of a second to import, and every
    # distributed rank imports this module through training.finetune without fitting
    from sklearn.linear_model import LogisticRegression  # noqa: PLC0415
    from sklearn.pipeline import make_pipeline  # noqa: PLC0415
    from sklearn.preprocessing import StandardScaler  # noqa: PLC0415

    probe = make_pipeline(StandardScaler(), LogisticRegression(max_iter=max_iter))
    probe.fit(features, targets)
    scaler, regression = probe[0], probe[1]
    weights = regression.coef_ / scaler.scale_  # W·(x - μ)/σ + b = (W/σ)·x + (b - W·μ/σ)
    bias = regression.intercept_ - weights @ scaler.mean_
    if len(regression.classes_) == 2:
        weights, bias = np.vstack([-weights / 2, weights / 2]), np.hstack([-bias / 2, bias / 2])
    head = model.head
    full_weight = np.zeros((head.out_features, head.in_features))
    full_bias = np.full(head.out_features, bias.min() + MISSING_CLASS_LOGIT)
    full_weight[regression.classes_] = weights
    full_bias[regression.classes_] = bias
    with torch.no_grad():
        head.weight.copy_(torch.from_numpy(full_weight))
        head.bias.copy_(torch.from_numpy(full_bias))
    return float(probe.score(features, targets))
