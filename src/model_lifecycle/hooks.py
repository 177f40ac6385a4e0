"""A pipeline run alone stops early, with one sentence, when an input was never produced."""

from __future__ import annotations

import importlib
from typing import Any

from kedro.framework.hooks import hook_impl
from kedro.io import DataCatalog
from kedro.pipeline import Pipeline

from model_lifecycle.errors import LifecycleError
from model_lifecycle.pipeline_registry import LIFECYCLE


class MissingInputsHook:
    """Before anything runs (and before an MLflow run is opened), check that every
    input the selected pipeline reads from the catalog exists, and name the pipeline
    that produces a missing one."""

    @hook_impl(tryfirst=True)
    def before_pipeline_run(self, run_params: dict[str, Any], pipeline: Pipeline,
                            catalog: DataCatalog) -> None:
        for name in sorted(pipeline.inputs()):
            if name == "parameters" or name.startswith("params:"):
                continue
            if not catalog.exists(name):
                raise LifecycleError(
                    f"Input '{name}' has never been produced: run "
                    f"`kedro run --pipeline={_producer(name)}` first."
                )


def _producer(dataset: str) -> str:
    """The first lifecycle pipeline that outputs ``dataset``.

    Built directly from the pipeline modules: during ``kedro run --pipelines=x``
    Kedro's registry holds only ``x``.
    """
    for name in LIFECYCLE:
        module = importlib.import_module(f"model_lifecycle.pipelines.{name}")
        if dataset in module.create_pipeline().all_outputs():
            return name
    return "__default__"
