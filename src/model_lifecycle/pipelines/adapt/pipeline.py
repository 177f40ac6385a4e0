"""Wiring of the ``adapt`` pipeline (not part of the default run).

The node reads the model of every variant that can be adapted; ``PreflightHook`` hands
it ``None`` for those ``adapt.variant`` does not name (``hooks.OPTIONAL_INPUTS``), so
only the chosen one has to exist.
"""

from kedro.pipeline import Node, Pipeline

from model_lifecycle.pipelines.adapt.nodes import adapt_variant
from model_lifecycle.training.tta_config import adaptable_variants


def create_pipeline(**kwargs) -> Pipeline:
    models = {v.name: v.dataset for v in adaptable_variants()}
    return Pipeline([
        Node(adapt_variant, {"images": "images", "splits": "splits",
                             "params": "params:adapt", "ingest": "params:ingest",
                             "runtime": "params:runtime", **models},
             ["adaptation_report", "adaptation_metrics", "adaptation_errors",
              "adapted_model"], name="adapt_variant"),
    ])
