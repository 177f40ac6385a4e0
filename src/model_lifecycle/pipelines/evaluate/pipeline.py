"""Wiring of the ``evaluate`` pipeline."""

from kedro.pipeline import Node, Pipeline

from model_lifecycle.pipelines.evaluate.nodes import evaluate_variants, plot_evaluation


def create_pipeline(**kwargs) -> Pipeline:
    variants = ["finetuned_model", "pruned_model", "quantized_model", "distilled_model"]
    return Pipeline([
        Node(evaluate_variants, [*variants, "scratch_model", "images", "splits",
                                 "params:compress",
                                 "params:evaluate"],
             ["evaluation_report", "evaluation_details", "evaluation_metrics"],
             name="evaluate_variants"),
        Node(plot_evaluation, ["evaluation_report", "evaluation_details", "params:evaluate"],
             ["confusion_matrices", "accuracy_tradeoffs", "reliability_diagram"],
             name="plot_evaluation"),
    ])
