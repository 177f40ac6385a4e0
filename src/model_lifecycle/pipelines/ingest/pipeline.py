"""Wiring of the ``ingest`` pipeline."""

from kedro.pipeline import Node, Pipeline

from model_lifecycle.pipelines.ingest.nodes import (
    ingest_images,
    ingest_source_images,
    report_ingest,
)


def create_pipeline(*, source: bool = False, **kwargs) -> Pipeline:
    """``source``: the ``transfer`` pipeline's source data set, which holds out only those
    of the novel classes it holds (``ingest_source_images``)."""
    return Pipeline([
        Node(ingest_source_images if source else ingest_images,
             ["params:ingest", "params:fewshot"],
             ["images", "splits", "novel_images"], name="ingest_images"),
        Node(report_ingest, ["images", "splits", "params:ingest", "novel_images"],
             ["dataset_report", "ingest_metrics", "class_distribution"],
             name="report_ingest"),
    ])
