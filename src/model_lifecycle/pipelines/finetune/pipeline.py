"""Wiring of the ``finetune`` pipeline."""

from kedro.pipeline import Node, Pipeline

from model_lifecycle.pipelines.finetune.nodes import finetune_with_adapter


def create_pipeline(**kwargs) -> Pipeline:
    return Pipeline([
        Node(finetune_with_adapter,
             ["images", "splits", "augmentation_policy", "pretrained_encoder",
              "params:finetune", "params:runtime"],
             ["finetuned_model", "finetune_metrics", "lora_adapter"], name="finetune_model"),
    ])
