"""Wiring of the ``fewshot`` pipeline (not part of ``__default__``)."""

from kedro.pipeline import Node, Pipeline

from model_lifecycle.pipelines.fewshot.nodes import evaluate_fewshot, meta_train_encoder


def create_pipeline(**kwargs) -> Pipeline:
    return Pipeline([
        Node(meta_train_encoder,
             ["images", "splits", "novel_images", "augmentation_policy", "pretrained_encoder",
              "finetuned_model", "params:fewshot", "params:runtime"],
             ["fewshot_encoder", "fewshot_training_metrics"], name="meta_train_encoder"),
        Node(evaluate_fewshot,
             ["images", "novel_images", "pretrained_encoder", "finetuned_model",
              "fewshot_encoder", "params:fewshot", "params:runtime"],
             ["fewshot_report", "fewshot_metrics", "fewshot_accuracy"],
             name="evaluate_fewshot"),
    ])
