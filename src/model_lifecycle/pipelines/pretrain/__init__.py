"""``pretrain``: self-supervised pretraining of an encoder on every training image."""

from model_lifecycle.pipelines.pretrain.pipeline import create_pipeline

__all__ = ["create_pipeline"]
