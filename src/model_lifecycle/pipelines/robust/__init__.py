"""``robust``: the fine-tuning recipe on adversarial examples (``finetune.adversarial``)."""

from model_lifecycle.pipelines.robust.pipeline import create_pipeline

__all__ = ["create_pipeline"]
