"""Wiring of the ``augment`` pipeline."""

from kedro.pipeline import Node, Pipeline

from model_lifecycle.pipelines.augment.nodes import (
    preview_augmentation,
    resolve_augmentation_policy,
)


def create_pipeline(**kwargs) -> Pipeline:
    return Pipeline([
        Node(resolve_augmentation_policy, "params:augment", "augmentation_policy",
             name="resolve_augmentation_policy"),
        Node(preview_augmentation,
             ["images", "splits", "augmentation_policy", "params:augment"],
             "augmentation_preview", name="preview_augmentation"),
    ])
