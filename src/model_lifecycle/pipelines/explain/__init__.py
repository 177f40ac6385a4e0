"""``explain``: attributions of every variant, their faithfulness and their drift."""

from model_lifecycle.pipelines.explain.pipeline import create_pipeline

__all__ = ["create_pipeline"]
