"""Nodes of the ``augment`` pipeline."""

from __future__ import annotations

from typing import Any

import numpy as np
from matplotlib.figure import Figure

from model_lifecycle.augment.config import AugmentParams, resolve_policy
from model_lifecycle.augment.preview import preview_grid
from model_lifecycle.data.imageset import ImageSet
from model_lifecycle.data.splits import checked_splits
from model_lifecycle.params import parse_params


def resolve_augmentation_policy(params: dict[str, Any]) -> dict[str, Any]:
    """Validate ``augment`` and fill every default: the policy training reads."""
    return resolve_policy(parse_params(AugmentParams, params, "augment"))


def preview_augmentation(images: ImageSet, splits: dict[str, np.ndarray],
                         policy: dict[str, Any], params: dict[str, Any]) -> Figure:
    """Originals beside their supervised and pretraining views."""
    config = parse_params(AugmentParams, params, "augment")
    split = checked_splits(images, splits)[config.preview.split]
    return preview_grid(images, split, policy, config.preview, seed=config.seed)
