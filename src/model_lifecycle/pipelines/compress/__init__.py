"""``compress``: pruned, quantized and distilled variants of the fine-tuned model."""

from model_lifecycle.pipelines.compress.pipeline import create_pipeline

__all__ = ["create_pipeline"]
