"""Wiring of the ``compress`` pipeline."""

from kedro.pipeline import Node, Pipeline

from model_lifecycle.pipelines.compress.nodes import (
    describe_finetuned,
    distill_model,
    prune_model,
    quantize_model,
)


def create_pipeline(**kwargs) -> Pipeline:
    data = ["images", "splits"]
    return Pipeline([
        Node(describe_finetuned, ["finetuned_model", *data, "params:compress"],
             "finetuned_cost", name="describe_finetuned"),
        Node(prune_model, ["finetuned_model", *data, "augmentation_policy",
                           "params:compress", "params:runtime"],
             ["pruned_model", "pruned_metrics"], name="prune_model"),
        Node(quantize_model, ["finetuned_model", "pruned_model", *data, "augmentation_policy",
                              "params:compress", "params:runtime"],
             ["quantized_model", "quantized_metrics"], name="quantize_model"),
        Node(distill_model, ["finetuned_model", *data, "augmentation_policy",
                             "params:compress", "params:runtime"],
             ["distilled_model", "distilled_metrics"], name="distill_model"),
    ])
