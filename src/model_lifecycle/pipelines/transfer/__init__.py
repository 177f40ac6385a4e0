"""``transfer``: pretrain on one data set (``source``), fine-tune on another."""

from model_lifecycle.pipelines.transfer.pipeline import create_pipeline

__all__ = ["create_pipeline"]
