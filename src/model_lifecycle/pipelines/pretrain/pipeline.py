"""Wiring of the ``pretrain`` pipeline."""

from kedro.pipeline import Node, Pipeline

from model_lifecycle.pipelines.pretrain.nodes import pretrain_encoder, pretrain_source_encoder


def create_pipeline(*, source: bool = False, **kwargs) -> Pipeline:
    """``source``: the ``transfer`` pipeline's source stage, whose messages name its
    parameters ``source.pretrain.*`` (``pretrain_source_encoder``)."""
    return Pipeline([
        Node(pretrain_source_encoder if source else pretrain_encoder,
             ["images", "splits", "augmentation_policy", "params:pretrain", "params:runtime"],
             ["pretrained_encoder", "pretrain_metrics"], name="pretrain_encoder"),
    ])
