"""``evaluate``: every model variant measured the same way on the test split."""

from model_lifecycle.pipelines.evaluate.pipeline import create_pipeline

__all__ = ["create_pipeline"]
