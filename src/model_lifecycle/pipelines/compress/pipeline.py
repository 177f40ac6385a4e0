"""Wiring of the ``compress`` pipeline."""

from kedro.pipeline import Node, Pipeline

from model_lifecycle.pipelines.compress.nodes import (
    describe_finetuned,
    distill_model,
    prune_model,
    quantize_model,
    quantize_onnx_model,
)
from model_lifecycle.variants import baseline, variant


def create_pipeline(**kwargs) -> Pipeline:
    data = ["images", "splits"]
    settings = ["augmentation_policy", "params:compress", "params:runtime", "params:evaluate"]
    source = baseline().dataset
    return Pipeline([
        Node(describe_finetuned, [source, *data, "params:evaluate"], "finetuned_cost",
             name="describe_finetuned"),
        Node(prune_model, [source, *data, *settings],
             [variant("pruned").dataset, "pruned_metrics"], name="prune_model"),
        Node(quantize_model, [source, variant("pruned").dataset, *data, *settings],
             [variant("quantized").dataset, "quantized_metrics"], name="quantize_model"),
        Node(quantize_onnx_model, [source, variant("pruned").dataset, *data,
                                   "params:compress", "params:runtime", "params:evaluate"],
             [variant("onnx_int8").dataset, "onnx_int8_metrics"], name="quantize_onnx_model"),
        Node(distill_model, [source, *data, *settings],
             [variant("distilled").dataset, "distilled_metrics"], name="distill_model"),
    ])
