"""``adapt``: test-time adaptation (batch-norm statistics, TENT) of one variant on shifted
test images; not part of the default run."""

from model_lifecycle.pipelines.adapt.pipeline import create_pipeline

__all__ = ["create_pipeline"]
