"""Nodes of the ``baseline`` pipeline."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from model_lifecycle.data.imageset import ImageSet
from model_lifecycle.models.classifier import Classifier
from model_lifecycle.pipelines.finetune.nodes import finetune_model


def train_scratch_baseline(images: ImageSet, splits: dict[str, np.ndarray],
                           policy: dict[str, Any], params: dict[str, Any],
                           runtime: dict[str, Any]
                           ) -> tuple[Classifier, dict[str, list[dict[str, float]]]]:
    """``finetune``'s recipe (architecture, epochs, optimiser, augmentation) with
    ``init: scratch`` and every parameter trained: what the labeled images alone give."""
    scratch = {**params, "init": "scratch", "strategy": "full"}
    if params.get("checkpoint"):  # its own checkpoint: the fine-tune's stays resumable
        scratch["checkpoint"] = str(Path(params["checkpoint"]).with_name("scratch.pt"))
    return finetune_model(images, splits, policy, None, scratch, runtime)
