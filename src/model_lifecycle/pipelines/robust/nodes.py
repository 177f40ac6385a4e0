"""Nodes of the ``robust`` pipeline."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from model_lifecycle.data.imageset import ImageSet
from model_lifecycle.models.classifier import Classifier
from model_lifecycle.pipelines.finetune.nodes import finetune_model


def train_robust_model(images: ImageSet, splits: dict[str, np.ndarray],
                       policy: dict[str, Any], pretrained_encoder: Classifier | None,
                       params: dict[str, Any], runtime: dict[str, Any]
                       ) -> tuple[Classifier, dict[str, list[dict[str, float]]]]:
    """``finetune``'s recipe (start, architecture, optimiser, augmentation) trained on
    adversarial examples crafted with ``finetune.adversarial``; the epoch kept is the one
    with the best clean + PGD accuracy on val, checked after every epoch (whatever
    ``finetune.eval_every`` says: catastrophic overfitting can collapse robustness within
    one epoch). ``finetune.adversarial.budget_seconds``, when set, replaces the recipe's
    time budget (adversarial steps cost more)."""
    robust = {**params, "eval_every": 1}
    budget = (params.get("adversarial") or {}).get("budget_seconds")
    if budget is not None:
        robust["budget_seconds"] = budget
    if params.get("checkpoint"):  # its own checkpoint: the fine-tune's stays resumable
        robust["checkpoint"] = str(Path(params["checkpoint"]).with_name("robust.pt"))
    return finetune_model(images, splits, policy, pretrained_encoder, robust, runtime,
                          adversarial=True)
