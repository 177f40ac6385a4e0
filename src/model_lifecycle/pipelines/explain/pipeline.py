"""Wiring of the ``explain`` pipeline: every declared variant (``variants.py``)."""

from kedro.pipeline import Node, Pipeline

from model_lifecycle.pipelines.evaluate.pipeline import variant_inputs
from model_lifecycle.pipelines.explain.nodes import explain_variants


def create_pipeline(*, optional_variants: bool = True, **kwargs) -> Pipeline:
    return Pipeline([
        Node(explain_variants, {"images": "images", "splits": "splits",
                                "params": "params:explain", "evaluate": "params:evaluate",
                                **variant_inputs(optional_variants=optional_variants)},
             ["explanation_summary", "explanation_details", "explanations"],
             name="explain_variants"),
    ])
