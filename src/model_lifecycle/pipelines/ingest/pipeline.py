"""Wiring of the ``ingest`` pipeline."""

from kedro.pipeline import Node, Pipeline

from model_lifecycle.pipelines.ingest.nodes import load_images, report_ingest, split_images


def create_pipeline(**kwargs) -> Pipeline:
    return Pipeline([
        Node(load_images, "params:ingest", "images", name="load_images"),
        Node(split_images, ["images", "params:ingest"], "splits", name="split_images"),
        Node(report_ingest, ["images", "splits", "params:ingest"],
             ["dataset_report", "ingest_metrics", "class_distribution"],
             name="report_ingest"),
    ])
