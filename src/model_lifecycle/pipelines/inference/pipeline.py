"""Wiring of the ``inference`` pipeline."""

from kedro.pipeline import Node, Pipeline

from model_lifecycle.pipelines.inference.nodes import predict_folder


def create_pipeline(**kwargs) -> Pipeline:
    return Pipeline([
        Node(predict_folder, ["params:inference", "params:register"], "predictions",
             name="predict_folder"),
    ])
