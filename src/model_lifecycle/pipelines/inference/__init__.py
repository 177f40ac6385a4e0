"""``inference``: the registered champion predicts a folder of new images."""

from model_lifecycle.pipelines.inference.pipeline import create_pipeline

__all__ = ["create_pipeline"]
