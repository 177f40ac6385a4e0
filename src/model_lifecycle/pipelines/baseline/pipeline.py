"""Wiring of the ``baseline`` pipeline (not part of the default run)."""

from kedro.pipeline import Node, Pipeline

from model_lifecycle.pipelines.baseline.nodes import train_scratch_baseline


def create_pipeline(**kwargs) -> Pipeline:
    return Pipeline([
        Node(train_scratch_baseline, ["images", "splits", "augmentation_policy",
                                      "params:finetune", "params:runtime"],
             ["scratch_model", "scratch_metrics"], name="train_scratch_baseline"),
    ])
