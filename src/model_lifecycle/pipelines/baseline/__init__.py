"""``baseline``: the fine-tuning recipe from scratch, the yardstick for pretraining."""

from model_lifecycle.pipelines.baseline.pipeline import create_pipeline

__all__ = ["create_pipeline"]
