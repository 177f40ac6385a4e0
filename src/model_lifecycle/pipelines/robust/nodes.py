"""Nodes of the ``robust`` pipeline."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from model_lifecycle.data.imageset import ImageSet
from model_lifecycle.errors import LifecycleError
from model_lifecycle.models.classifier import Classifier
from model_lifecycle.pipelines.finetune.nodes import finetune_model


def train_robust_model(images: ImageSet, splits: dict[str, np.ndarray],
                       policy: dict[str, Any], pretrained_encoder: Classifier | None,
                       finetuned_model: Classifier | None, params: dict[str, Any],
                       runtime: dict[str, Any]
                       ) -> tuple[Classifier, dict[str, list[dict[str, float]]]]:
    """``finetune``'s recipe (start, architecture, optimiser, augmentation) trained on
    adversarial examples crafted with ``finetune.adversarial``; the epoch kept is the one
    with the best clean + PGD accuracy on val, checked after every epoch (whatever
    ``finetune.eval_every`` says: catastrophic overfitting can collapse robustness within
    one epoch). ``finetune.adversarial.budget_seconds``, when set, replaces the recipe's
    time budget (adversarial steps cost more); ``adversarial.init: finetuned`` starts from
    ``finetuned_model`` instead of ``finetune.init``, ``adversarial.lr`` replaces the
    recipe's peak learning rate and ``adversarial.whiten_stem`` its ``whiten_stem``."""
    robust = {**params, "eval_every": 1}
    adversarial = params.get("adversarial") or {}
    if adversarial.get("budget_seconds") is not None:
        robust["budget_seconds"] = adversarial["budget_seconds"]
    if adversarial.get("lr") is not None:
        robust["optimizer"] = {**params.get("optimizer", {}), "lr": adversarial["lr"]}
    if adversarial.get("whiten_stem") is not None:
        robust["whiten_stem"] = adversarial["whiten_stem"]
    if params.get("checkpoint"):  # its own checkpoint: the fine-tune's stays resumable
        robust["checkpoint"] = str(Path(params["checkpoint"]).with_name("robust.pt"))
    start = None
    if adversarial.get("init") == "finetuned":
        if finetuned_model is None:
            raise LifecycleError("finetune.adversarial.init is 'finetuned' but no "
                                 "finetuned_model exists: run `kedro run --pipelines="
                                 "finetune` first, or set finetune.adversarial.init: recipe.")
        start = finetuned_model
    return finetune_model(images, splits, policy, pretrained_encoder, robust, runtime,
                          adversarial=True, start=start)
