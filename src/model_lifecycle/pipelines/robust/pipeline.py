"""Wiring of the ``robust`` pipeline (not part of the default run)."""

from kedro.pipeline import Node, Pipeline

from model_lifecycle.pipelines.robust.nodes import train_robust_model


def create_pipeline(**kwargs) -> Pipeline:
    return Pipeline([
        Node(train_robust_model, ["images", "splits", "augmentation_policy",
                                  "pretrained_encoder", "finetuned_model", "params:finetune",
                                  "params:runtime"],
             ["robust_model", "robust_metrics"], name="train_robust_model"),
    ])
