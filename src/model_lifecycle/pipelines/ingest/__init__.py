"""``ingest``: read a source into one uint8 array, split it, report what was read."""

from model_lifecycle.pipelines.ingest.pipeline import create_pipeline

__all__ = ["create_pipeline"]
