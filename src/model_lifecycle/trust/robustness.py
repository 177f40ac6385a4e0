"""Robustness of every variant on the same test images: accuracy under the generated
common corruptions, and under FGSM and PGD (white-box, or transferred from the float
source of a model without autograd)."""

from __future__ import annotations

import logging
import time

import numpy as np
import pandas as pd
import torch
from torch import nn

from model_lifecycle.models.predict import predict
from model_lifecycle.trust.attacks import attack_accuracy
from model_lifecycle.trust.config import AdversarialEvalParams, RobustnessParams
from model_lifecycle.trust.corruptions import corrupt, family

log = logging.getLogger(__name__)


def seeded_sample(test: np.ndarray, size: int | None, seed: int) -> np.ndarray:
    """Up to ``size`` indices of ``test`` drawn with ``seed`` (all of them for None), in
    index order."""
    if size is None or size >= len(test):
        return np.sort(test)
    return np.sort(np.random.default_rng(seed).choice(test, size, replace=False))


def corruption_accuracy(models: dict[str, nn.Module], images: np.ndarray,
                        labels: np.ndarray, test: np.ndarray,
                        params: RobustnessParams) -> pd.DataFrame:
    """Accuracy of each model on a seeded sample of the test images, clean (severity 0)
    and under each corruption at each severity. Each corrupted set is generated once
    and shown to every model. Columns: variant, corruption, family, severity, accuracy."""
    sample = seeded_sample(test, params.images, params.seed)
    clean = torch.from_numpy(images[sample])
    truth = labels[sample]
    rows = [_row(name, "clean", "clean", 0, _accuracy(model, clean, truth))
            for name, model in models.items()]
    tic = time.perf_counter()
    for corruption in params.names():
        for severity in params.severities:
            shifted = corrupt(clean, corruption, severity, seed=params.seed)
            rows += [_row(name, corruption, family(corruption), severity,
                          _accuracy(model, shifted, truth))
                     for name, model in models.items()]
    log.info("corruption robustness: %d corruptions × %d severities of %d images, %d "
             "variants in %.0f s", len(params.names()), len(params.severities), len(sample),
             len(models), time.perf_counter() - tic)
    return pd.DataFrame(rows)


def corruption_summary(table: pd.DataFrame) -> pd.DataFrame:
    """Per variant: ``corruption_clean_accuracy`` (the same sample, uncorrupted),
    ``corruption_accuracy`` (mean over every corruption and severity) and
    ``corruption_robust_drop`` (relative: 1 − corrupted / clean)."""
    clean = table[table.severity == 0].set_index("variant").accuracy
    shifted = table[table.severity > 0].groupby("variant", sort=False).accuracy.mean()
    summary = pd.DataFrame({"corruption_clean_accuracy": clean,
                            "corruption_accuracy": shifted}).reindex(clean.index)
    summary["corruption_robust_drop"] = 1 - summary.corruption_accuracy / \
        summary.corruption_clean_accuracy.where(summary.corruption_clean_accuracy > 0)
    return summary.rename_axis("variant").reset_index()


def adversarial_accuracy(models: dict[str, nn.Module], sources: dict[str, str],
                         images: np.ndarray, labels: np.ndarray, test: np.ndarray,
                         params: AdversarialEvalParams) -> pd.DataFrame:
    """Per variant: accuracy under each attack of ``params.methods`` on a seeded sample
    of the test images, and how it was attacked: ``white-box`` with its own gradients,
    or ``transfer from <source>`` for a variant listed in ``sources`` (INT8: no
    autograd; its robustness is then an upper bound, not gradient masking)."""
    sample = seeded_sample(test, params.images, params.seed)
    rows = []
    for name, model in models.items():
        source = sources.get(name)
        row = {"variant": name,
               "attack": f"transfer from {source}" if source else "white-box"}
        for method in params.methods:
            row[f"{method}_accuracy"] = attack_accuracy(
                model, images, labels, sample, method=method, epsilon=params.epsilon,
                alpha=params.alpha, steps=params.steps, seed=params.seed,
                source=models[source] if source else None)
        rows.append(row)
        log.info("%s: %s", name, ", ".join(f"{k} {v:.3f}" for k, v in row.items()
                                          if k.endswith("_accuracy")))
    return pd.DataFrame(rows)


def _accuracy(model: nn.Module, batch: torch.Tensor, truth: np.ndarray) -> float:
    logits = predict(model, batch.numpy(), np.arange(len(batch)))
    return float((logits.argmax(1).numpy() == truth).mean())


def _row(variant: str, corruption: str, kind: str, severity: int, accuracy: float) -> dict:
    return {"variant": variant, "corruption": corruption, "family": kind,
            "severity": severity, "accuracy": accuracy}
