"""Project hooks: checks before a run starts, and MLflow run bookkeeping after it."""

from __future__ import annotations

import importlib
from collections.abc import Callable
from typing import Any

import mlflow
from kedro.framework.hooks import hook_impl
from kedro.io import DataCatalog, MemoryDataset
from kedro.pipeline import Pipeline
from pydantic import BaseModel

from model_lifecycle.augment.config import AugmentParams
from model_lifecycle.compression.config import CompressParams
from model_lifecycle.data.config import IngestParams
from model_lifecycle.errors import LifecycleError
from model_lifecycle.evaluation.config import EvaluateParams
from model_lifecycle.params import dotted_keys, parse_params
from model_lifecycle.pipeline_registry import LIFECYCLE
from model_lifecycle.serving.config import InferenceParams, RegisterParams
from model_lifecycle.training.config import FinetuneParams, PretrainParams, RuntimeParams
from model_lifecycle.variants import variants

# The validated model of each parameter group a pipeline reads as ``params:<group>``.
PARAMETER_MODELS: dict[str, type[BaseModel]] = {
    "ingest": IngestParams,
    "augment": AugmentParams,
    "pretrain": PretrainParams,
    "finetune": FinetuneParams,
    "runtime": RuntimeParams,
    "compress": CompressParams,
    "evaluate": EvaluateParams,
    "register": RegisterParams,
    "inference": InferenceParams,
}

# Inputs a pipeline can do without, depending on its parameters:
# dataset → (parameter group, "is it needed?", how else to proceed).
OPTIONAL_INPUTS: dict[str, tuple[str, Callable[[Any], bool], str]] = {
    "pretrained_encoder": ("finetune", lambda p: p.init == "pretrained",
                           "or set finetune.init: scratch"),
    **{v.dataset: ("evaluate", lambda p, flag=v.evaluated_when: getattr(p, flag),
                   f"or set evaluate.{v.evaluated_when}: false")
       for v in variants() if v.evaluated_when},
}


class PreflightHook:
    """Before anything runs (and before an MLflow run is opened): refuse parameter
    groups nobody reads, validate every group the selected pipeline reads, then check
    that every input it reads from the catalog exists, naming in one sentence all that
    are missing and the one command that produces them."""

    @hook_impl(tryfirst=True)
    def before_pipeline_run(self, run_params: dict[str, Any], pipeline: Pipeline,
                            catalog: DataCatalog) -> None:
        overrides = dotted_keys(run_params.get("runtime_params") or {})
        _check_groups(catalog.load("parameters"), overrides)
        inputs = sorted(pipeline.inputs())
        groups = {}
        for name in inputs:
            group = name.removeprefix("params:")
            if name.startswith("params:") and group in PARAMETER_MODELS:
                groups[group] = parse_params(PARAMETER_MODELS[group], catalog.load(name),
                                             group, overrides=overrides)
        missing, otherwise = [], []
        for name in inputs:
            if name == "parameters" or name.startswith("params:") or catalog.exists(name):
                continue
            group, needed, instead = OPTIONAL_INPUTS.get(name, (None, None, ""))
            if group in groups and not needed(groups[group]):
                catalog[name] = MemoryDataset(None)  # the node is told there is none
                continue
            missing.append(name)
            otherwise += [instead] if instead else []
        if missing:
            raise LifecycleError(_missing_sentence(missing, otherwise))


def _check_groups(parameters: dict[str, Any], overrides: frozenset[str]) -> None:
    """A top-level parameter key that is no parameter group is a typo, not a new group."""
    for name in sorted(parameters or {}):
        if name not in PARAMETER_MODELS:
            where = ("given with kedro run --params" if name in overrides
                     else "in the conf/ parameter files")
            raise LifecycleError(
                f"Unknown parameter group '{name}' {where}: the groups are "
                f"{', '.join(sorted(PARAMETER_MODELS))}.")


def _missing_sentence(missing: list[str], otherwise: list[str]) -> str:
    producers = [_producer(name) for name in missing]
    order = [*LIFECYCLE, "baseline", "__default__"]
    command = ",".join(sorted(set(producers), key=order.index))
    names = ", ".join(f"'{name}'" for name in missing)
    alternatives = "".join(f" {text}" for text in otherwise)
    if len(missing) == 1:
        return (f"Input {names} has never been produced: run "
                f"`kedro run --pipelines={command}` first{alternatives}.")
    return (f"Inputs {names} have never been produced: run "
            f"`kedro run --pipelines={command}` first, which produces them all"
            f"{alternatives}.")


def _producer(dataset: str) -> str:
    """The first pipeline (lifecycle order, then ``baseline``) that outputs ``dataset``.

    Built directly from the pipeline modules: during ``kedro run --pipelines=x``
    Kedro's registry holds only ``x``.
    """
    for name in (*LIFECYCLE, "baseline"):
        module = importlib.import_module(f"model_lifecycle.pipelines.{name}")
        if dataset in module.create_pipeline().all_outputs():
            return name
    return "__default__"


class CloseMlflowRunHook:
    """End the pipeline's MLflow run completely once the pipeline has finished.

    kedro-mlflow re-opens its run before every node (``start_run(run_id, nested=True)``)
    and MLflow 3 pushes it on the active-run stack each time, while ``after_pipeline_run``
    pops it once. In a ``kedro run`` process the interpreter's exit closes the rest; in
    a notebook or any process running several sessions the next session would log into
    the previous run. This hook pops what is left, leaving runs the caller opened alone.
    """

    def __init__(self) -> None:
        self._caller_run_id: str | None = None

    @hook_impl(tryfirst=True)
    def before_pipeline_run(self) -> None:
        active = mlflow.active_run()
        self._caller_run_id = active.info.run_id if active else None

    @hook_impl(trylast=True)
    def after_pipeline_run(self) -> None:
        while (active := mlflow.active_run()) and active.info.run_id != self._caller_run_id:
            mlflow.end_run()
