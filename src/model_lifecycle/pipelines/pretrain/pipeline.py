"""Wiring of the ``pretrain`` pipeline."""

from kedro.pipeline import Node, Pipeline

from model_lifecycle.pipelines.pretrain.nodes import pretrain_encoder


def create_pipeline(**kwargs) -> Pipeline:
    return Pipeline([
        Node(pretrain_encoder,
             ["images", "splits", "augmentation_policy", "params:pretrain", "params:runtime"],
             ["pretrained_encoder", "pretrain_metrics"], name="pretrain_encoder"),
    ])
