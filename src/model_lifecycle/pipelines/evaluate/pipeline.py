"""Wiring of the ``evaluate`` pipeline: every declared variant (``variants.py``)."""

from kedro.pipeline import Node, Pipeline

from model_lifecycle.pipelines.evaluate.nodes import evaluate_variants, plot_evaluation
from model_lifecycle.variants import variants


def create_pipeline(*, optional_variants: bool = True, **kwargs) -> Pipeline:
    """``optional_variants=False`` leaves out the variants no default-run pipeline makes
    (``scratch``): the ``__default__`` graph then has no input that nothing produces."""
    models = {v.name: v.dataset for v in variants()
              if optional_variants or not v.evaluated_when}
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
