"""``register``: every variant into the MLflow model registry; aliases ``baseline`` and
``champion``."""

from model_lifecycle.pipelines.register.pipeline import create_pipeline

__all__ = ["create_pipeline"]
