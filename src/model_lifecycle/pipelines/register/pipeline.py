"""Wiring of the ``register`` pipeline."""

from kedro.pipeline import Node, Pipeline

from model_lifecycle.pipelines.register.nodes import register_models


def create_pipeline(**kwargs) -> Pipeline:
    return Pipeline([
        Node(register_models, ["evaluation_report", "finetuned_model", "pruned_model",
                               "quantized_model", "distilled_model", "images",
                               "params:ingest", "params:register"],
             "registry_summary", name="register_models"),
    ])
