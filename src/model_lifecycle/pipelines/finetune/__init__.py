"""``finetune``: adapt the (pretrained) model to the labeled task."""

from model_lifecycle.pipelines.finetune.pipeline import create_pipeline

__all__ = ["create_pipeline"]
