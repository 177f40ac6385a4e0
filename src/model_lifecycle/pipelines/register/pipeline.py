"""Wiring of the ``register`` pipeline: every registered variant (``variants.py``)."""

from kedro.pipeline import Node, Pipeline

from model_lifecycle.pipelines.register.nodes import register_models
from model_lifecycle.variants import variants


def create_pipeline(**kwargs) -> Pipeline:
    models = {v.name: v.dataset for v in variants() if v.registered}
    return Pipeline([
        Node(register_models, {"evaluation_report": "evaluation_report", "images": "images",
                               "splits": "splits", "ingest": "params:ingest",
                               "params": "params:register",
                               **models},
             "registry_summary", name="register_models"),
    ])
