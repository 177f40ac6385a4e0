"""``augment``: resolve the augmentation policy and preview what it does."""

from model_lifecycle.pipelines.augment.pipeline import create_pipeline

__all__ = ["create_pipeline"]
