"""Wiring of the ``evaluate`` pipeline: every declared variant (``variants.py``)."""

from kedro.pipeline import Node, Pipeline

from model_lifecycle.pipelines.evaluate.nodes import evaluate_variants, plot_evaluation
from model_lifecycle.variants import variants


def create_pipeline(**kwargs) -> Pipeline:
    models = {v.name: v.dataset for v in variants()}
    return Pipeline([
        Node(evaluate_variants, {"images": "images", "splits": "splits",
                                 "compress": "params:compress", "params": "params:evaluate",
                                 **models},
             ["evaluation_report", "evaluation_details", "evaluation_metrics"],
             name="evaluate_variants"),
        Node(plot_evaluation, ["evaluation_report", "evaluation_details", "params:evaluate"],
             ["confusion_matrices", "accuracy_tradeoffs", "reliability_diagram"],
             name="plot_evaluation"),
    ])
