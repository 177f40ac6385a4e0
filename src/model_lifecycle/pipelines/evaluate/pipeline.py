"""Wiring of the ``evaluate`` pipeline: every declared variant (``variants.py``)."""

from kedro.pipeline import Node, Pipeline

from model_lifecycle.pipelines.evaluate.nodes import (
    assemble_report,
    evaluate_variants,
    measure_adversarial_robustness,
    measure_corruption_robustness,
    measure_onnx,
    plot_evaluation,
)
from model_lifecycle.variants import variants


def variant_inputs(*, optional_variants: bool = True) -> dict[str, str]:
    """Node inputs of every variant's model (``finetuned`` → ``finetuned_model``);
    ``optional_variants=False`` leaves out those no default-run pipeline makes
    (``scratch``, ``robust``): the ``__default__`` graph then has no input that nothing
    produces."""
    return {v.name: v.dataset for v in variants() if optional_variants or not v.evaluated_when}


def create_pipeline(*, optional_variants: bool = True, **kwargs) -> Pipeline:
    models = variant_inputs(optional_variants=optional_variants)
    data = {"images": "images", "splits": "splits"}
    return Pipeline([
        Node(evaluate_variants, {**data, "compress": "params:compress",
                                 "params": "params:evaluate", **models},
             ["variant_quality", "evaluation_details"], name="evaluate_variants"),
        Node(measure_corruption_robustness, {**data, "params": "params:evaluate", **models},
             "corruption_report", name="measure_corruption_robustness"),
        Node(measure_adversarial_robustness, {**data, "compress": "params:compress",
                                              "params": "params:evaluate", **models},
             "adversarial_report", name="measure_adversarial_robustness"),
        Node(measure_onnx, {**data, "compress": "params:compress",
                            "params": "params:evaluate", **models},
             "onnx_report", name="measure_onnx"),
        Node(assemble_report, ["variant_quality", "corruption_report", "adversarial_report",
                               "onnx_report", "explanation_summary", "params:evaluate"],
             ["evaluation_report", "evaluation_metrics"], name="assemble_report"),
        Node(plot_evaluation, ["evaluation_report", "evaluation_details",
                               "corruption_report", "params:evaluate"],
             ["confusion_matrices", "accuracy_tradeoffs", "reliability_diagram",
              "corruption_robustness"], name="plot_evaluation"),
    ])
