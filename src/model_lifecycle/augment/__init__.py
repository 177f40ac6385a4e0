"""Batched tensor augmentations and the policy that configures them (no Kedro in here)."""

from model_lifecycle.augment.augmenter import BatchAugmenter, LabelMixer
from model_lifecycle.augment.config import (
    AugmentParams,
    SupervisedPolicy,
    ViewPolicy,
    policy_from_artifact,
    resolve_policy,
)

__all__ = ["AugmentParams", "BatchAugmenter", "LabelMixer", "SupervisedPolicy",
           "ViewPolicy", "policy_from_artifact", "resolve_policy"]
