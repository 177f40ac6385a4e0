"""Project hooks: checks before a run starts, and MLflow run bookkeeping after it."""

from __future__ import annotations

import importlib
import logging
import os
import socket
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import mlflow
from kedro.config import MissingConfigException
from kedro.framework.hooks import hook_impl
from kedro.io import DataCatalog, MemoryDataset
from kedro.pipeline import Pipeline
from kedro_mlflow.framework.hooks.mlflow_hook import MlflowHook
from mlflow.entities import Metric
from mlflow.exceptions import MlflowException
from mlflow.utils.validation import MAX_PARAM_VAL_LENGTH
from pydantic import BaseModel

from model_lifecycle.augment.config import AugmentParams
from model_lifecycle.compression.config import CompressParams
from model_lifecycle.data.config import IngestParams
from model_lifecycle.errors import ArchitectureArgumentsError, ImageSizeError, LifecycleError
from model_lifecycle.evaluation.config import EvaluateParams
from model_lifecycle.params import dotted_keys, dropped_by_env, parse_params
from model_lifecycle.pipeline_registry import BEYOND, LIFECYCLE, NAMESPACES, OPTIONAL
from model_lifecycle.serving.config import InferenceParams, RegisterParams
from model_lifecycle.tracking_server import probe
from model_lifecycle.training.checkpoint import process_alive
from model_lifecycle.training.config import FinetuneParams, PretrainParams, RuntimeParams
from model_lifecycle.training.fewshot_config import FewshotParams
from model_lifecycle.training.tta_config import AdaptParams, adaptable_variants
from model_lifecycle.trust.config import ExplainParams
from model_lifecycle.variants import baseline, variants

log = logging.getLogger(__name__)

# The node running now (NodeTimingHook), for the sentence of an interrupted run (cli.py).
RUNNING_NODE: list[str] = []

# The validated model of each parameter group a pipeline reads as ``params:<group>``.
PARAMETER_MODELS: dict[str, type[BaseModel]] = {
    "ingest": IngestParams,
    "augment": AugmentParams,
    "pretrain": PretrainParams,
    "finetune": FinetuneParams,
    "runtime": RuntimeParams,
    "compress": CompressParams,
    "explain": ExplainParams,
    "evaluate": EvaluateParams,
    "register": RegisterParams,
    "inference": InferenceParams,
    "fewshot": FewshotParams,
    "adapt": AdaptParams,
}


# Inputs a pipeline can do without, depending on its parameters:
# dataset → [(parameter group, "is it needed?", how else to proceed), …]. An input is
# left out when the pipeline reads one of these groups and none of those it reads needs it.
Rule = tuple[str, Callable[[Any], bool], str]
OPTIONAL_INPUTS: dict[str, list[Rule]] = {
    "pretrained_encoder": [("finetune", lambda p: p.init == "pretrained",
                            "or set finetune.init: scratch")],
    **{v.dataset: [("evaluate", lambda p, flag=v.evaluated_when: getattr(p, flag),
                    f"or set evaluate.{v.evaluated_when}: false")]
       for v in variants() if v.evaluated_when},
}
# `adapt` reads every adaptable variant's model and needs only adapt.variant's
for _v in adaptable_variants():
    OPTIONAL_INPUTS.setdefault(_v.dataset, []).append(
        ("adapt", lambda p, name=_v.name: p.variant == name,
         "or set adapt.variant to a variant that exists"))
# `robust` starts from the fine-tuned model only with finetune.adversarial.init: finetuned
OPTIONAL_INPUTS.setdefault("finetuned_model", []).append(
    ("finetune", lambda p: p.adversarial.init == "finetuned",
     "or set finetune.adversarial.init: recipe"))
# `fewshot` compares the pretrained and fine-tuned encoders where they exist (a missing one
# is skipped with a logged reason) and needs one only to start meta-training from it
for _dataset, _init in (("pretrained_encoder", "pretrained"), ("finetuned_model", "finetuned")):
    OPTIONAL_INPUTS.setdefault(_dataset, []).append(
        ("fewshot", lambda p, init=_init: "meta_trained" in p.encoders
         and p.meta_train.init == init, "or set fewshot.meta_train.init: scratch"))
# The node that meta-trains the `meta_trained` encoder of `fewshot` (namespaced or not).
META_TRAIN_NODE = "meta_train_encoder"


class PreflightHook:
    """Before anything runs (and before an MLflow run is opened): refuse parameter
    groups nobody reads, validate every group the selected pipeline reads, then check
    that every input it reads from the catalog exists, naming in one sentence all that
    are missing and the one command that produces them."""

    unneeded: set[str] = set()  # this run's optional inputs that its parameters leave out

    @hook_impl(tryfirst=True)
    def before_pipeline_run(self, run_params: dict[str, Any], pipeline: Pipeline,
                            catalog: DataCatalog) -> None:
        overrides = dotted_keys(run_params.get("runtime_params") or {})
        _check_groups(catalog.load("parameters"), overrides)
        inputs = sorted(pipeline.inputs())
        groups, refused = {}, []
        for name in inputs:
            group = name.removeprefix("params:")
            model = PARAMETER_MODELS.get(group.rpartition(".")[2])
            if name.startswith("params:") and model is not None:
                reads = f"{group.rpartition('.')[0]}.images" if "." in group else "images"
                try:
                    groups[group] = parse_params(
                        model, catalog.load(name), group, overrides=overrides,
                        context={"reads_files": reads in pipeline.all_outputs()},
                        env=run_params.get("env"))
                except LifecycleError as exc:  # every group's first problem, in one go
                    refused.append(str(exc))
        if refused:
            raise LifecycleError(" ".join(refused))
        _check_settings(groups, pipeline, catalog)
        for sentence in dropped_by_env(groups, run_params.get("env"), overrides):
            log.warning(sentence)
        # inputs the run's parameters say it can do without (TrainedOnHook skips them)
        self.unneeded = {name for name in inputs
                         if (ruled := _needed_by(name, groups))[0] and not ruled[1]}
        missing, otherwise, in_memory = [], [], []
        pinned = run_params.get("load_versions") or {}
        for name in inputs:
            if name == "parameters" or name.startswith("params:") or catalog.exists(name):
                continue
            if name in pinned:
                raise LifecycleError(_no_such_version(name, pinned[name], catalog))
            if _in_memory(catalog, name):
                in_memory.append(name)
                continue
            rules, needed_by = _needed_by(name, groups)
            if rules and not needed_by and _every_reader_ruled(pipeline, name, rules):
                _replace(catalog, name, MemoryDataset(None))  # the node is told there is none
                continue
            missing.append(name)
            otherwise += needed_by
        if in_memory:  # (--from-nodes past a node whose outputs are not saved)
            names = ", ".join(f"'{name}'" for name in in_memory)
            raise LifecycleError(
                f"{'Inputs' if len(in_memory) > 1 else 'Input'} {names} "
                f"{'are' if len(in_memory) > 1 else 'is'} not saved between runs (in "
                "memory only): start the run at the nodes that make them, with "
                f"`kedro run --from-nodes={','.join(_producing_nodes(in_memory))}`.")
        if missing:
            raise LifecycleError(_missing_sentence(missing, otherwise, catalog))


def _check_settings(groups: dict[str, Any], pipeline: Pipeline, catalog: DataCatalog) -> None:
    """What the validated groups together must satisfy before anything runs (and what
    they turn off: meta-training nobody compares)."""
    if "finetune" in groups:
        _check_lora_targets(groups, pipeline)
    if ("compress" in groups and "finetune" in groups
            and "finetuned_model" in pipeline.all_outputs()):
        _check_structured_pruning(groups)
    _check_architectures(groups)
    _check_sizes(groups, pipeline)
    if "compress" in groups:
        _note_unused_quantize_keys(groups["compress"].quantize)
    if "inference" in groups:  # the folder and the model: before a run is opened
        from model_lifecycle.serving.predict import (  # noqa: PLC0415
            files_to_predict,
            registered_version,
        )

        files_to_predict(groups["inference"].input_dir)
        if "register" in groups and "registry_summary" not in pipeline.all_outputs():
            registered_version(groups["register"].model_name, groups["inference"].alias)
    if "fewshot" in groups and "meta_trained" not in groups["fewshot"].encoders:
        _skip_meta_training(pipeline, catalog)
    if "runtime" in groups and groups["runtime"].device == "cuda":
        # imports torch: only for a run that asks for a GPU
        from model_lifecycle.training.device import resolve_device  # noqa: PLC0415
        resolve_device("cuda")  # no GPU visible: one sentence, before anything runs
    if "runtime" in groups and groups["runtime"].distributed.world_size > 1:
        # imports torch: only for a run that asks for distributed training
        from model_lifecycle.training.distributed import check_launch  # noqa: PLC0415
        check_launch(groups["runtime"], _training_stages(groups))


def _note_unused_quantize_keys(quantize: Any) -> None:
    """QAT's keys changed from their defaults while another mode is set: said once, since
    the run would otherwise ignore them without a word."""
    defaults = type(quantize)()
    changed = [f"{key} {getattr(quantize, key)!r}" for key in ("qat_epochs", "qat_lr")
               if getattr(quantize, key) != getattr(defaults, key)]
    if quantize.mode != "qat" and changed:
        log.warning("compress.quantize.mode is %s, so compress.quantize.%s %s not used "
                    "(they apply to mode: qat only)", quantize.mode,
                    " and compress.quantize.".join(changed),
                    "is" if len(changed) == 1 else "are")


def _check_sizes(groups: dict[str, Any], pipeline: Pipeline) -> None:
    """The models the run builds, and the explanations it draws, against the images'
    size and the architectures' arguments: before ingest saves, not in the stage that
    fails after the training before it."""
    for prefix in ("", *(f"{namespace}." for namespace in NAMESPACES)):  # source.*
        if f"{prefix}ingest" in groups and ({f"{prefix}pretrain", f"{prefix}finetune"}
                                            & set(groups)):
            _check_image_size(groups, prefix)
    if {"source.ingest", "source.pretrain", "ingest", "finetune"} <= set(groups):
        _check_transfer_size(groups)
    # ingest's parameters say the images' size only in a run that ingests (register and
    # adapt read them too, and the latest images may have been ingested with --params);
    # otherwise the nodes check against the images they read
    ingests = "images" in pipeline.all_outputs()
    if "compress" in groups and "distilled_model" in pipeline.all_outputs():
        _check_student(groups if ingests else
                       {key: value for key, value in groups.items() if key != "ingest"})
    if ingests and {"ingest", "explain"} <= set(groups):
        height, width = groups["ingest"].size_hw
        if problem := groups["explain"].constant_occlusion(height, width,
                                                           "ingest.image_size"):
            raise LifecycleError(problem)


def _check_architectures(groups: dict[str, Any]) -> None:
    """A misspelt architecture stops the run before anything runs, not at its stage after
    the ones before it (`compress.distill.student_arch` after pretraining and
    fine-tuning)."""
    named = {}
    for group, params in groups.items():  # `source.pretrain` of transfer too
        stage = group.rpartition(".")[2]
        if stage == "pretrain" or (stage == "finetune" and params.init != "pretrained"):
            named[f"{group}.arch"] = params.arch
        elif stage == "compress":
            named[f"{group}.distill.student_arch"] = params.distill.student_arch
    if not named:
        return
    from model_lifecycle.models.registry import available  # noqa: PLC0415 - imports torch

    known = available()
    for key, arch in named.items():
        if arch not in known:
            raise LifecycleError(f"{key} '{arch}' is not an architecture: choose one of "
                                 f"{', '.join(known)}.")


def _check_image_size(groups: dict[str, Any], prefix: str = "") -> None:
    """Images too small for an architecture this run trains (a 3-pixel image through
    `small_cnn`'s two poolings), or of a size it cannot take (vit's patches), fail inside
    the first training step, after ingest has saved them; so do arguments it refuses.
    ``prefix``: a namespace's (``source.``)."""
    ingest = groups[f"{prefix}ingest"]
    for group in (f"{prefix}pretrain", f"{prefix}finetune"):
        # a fine-tuned model from the pretrained encoder has pretrain's architecture
        if group not in groups or (group.endswith("finetune")
                                   and groups[group].init == "pretrained"):
            continue
        if problem := _build_problem(groups[group].arch, groups[group].arch_kwargs,
                                     ingest.channels or 3, ingest.size_hw,
                                     arch_key=f"{group}.arch",
                                     kwargs_key=f"{group}.arch_kwargs",
                                     size_key=f"{prefix}ingest.image_size"):
            raise LifecycleError(problem)


def _check_student(groups: dict[str, Any]) -> None:
    """The distillation student is built from `compress.distill.student_arch` and
    `student_kwargs` after pretraining, fine-tuning and pruning: a misspelt or
    impossible argument (a width of 0) is found before them, and passed an image of
    `ingest.image_size` when the run ingests (``groups`` holds `ingest` then)."""
    distill, ingest = groups["compress"].distill, groups.get("ingest")
    if problem := _build_problem(distill.student_arch, distill.student_kwargs,
                                 (ingest.channels or 3) if ingest else 3,
                                 ingest.size_hw if ingest else None,
                                 arch_key="compress.distill.student_arch",
                                 kwargs_key="compress.distill.student_kwargs",
                                 size_key="ingest.image_size"):
        raise LifecycleError(problem)


def _build_problem(arch: str, kwargs: dict[str, Any], channels: int,
                   size: tuple[int, int] | None, *, arch_key: str, kwargs_key: str,
                   size_key: str) -> str | None:
    """Why ``arch`` with ``kwargs`` cannot be built, or cannot take a C×H×W image of
    ``size`` (None: not tried), in one sentence naming the keys; None when it can. Built
    on the meta device: no memory, no time."""
    import torch  # noqa: PLC0415 - a run that trains imports it anyway

    from model_lifecycle.models.registry import shape_only  # noqa: PLC0415

    try:
        model = shape_only(arch, channels, input_size=size, **kwargs)
        if size is not None:
            with torch.device("meta"):
                model.eval()(torch.zeros(1, channels, *size))
    except ArchitectureArgumentsError as exc:
        return f"{kwargs_key} {kwargs} do not suit {arch_key} '{arch}' ({exc.reason}): fix them."
    except ImageSizeError as exc:  # the architecture's own sentence (vit's patches)
        return (f"{arch_key} '{arch}' cannot take images of {size_key} "
                f"{size[0]}×{size[1]}: {str(exc).removeprefix(arch + ': ')}")
    except (LifecycleError, NotImplementedError):
        return None  # another setting's own sentence, or an op without a meta kernel
    except (RuntimeError, IndexError) as exc:  # IndexError: a layer of width 0
        also = f" or fix {kwargs_key} {kwargs}" if kwargs else ""
        return (f"{size_key} {size[0]}×{size[1]} is too small for {arch_key} '{arch}' "
                f"({str(exc).splitlines()[0]}): raise {size_key}{also}.")
    return None


def _check_transfer_size(groups: dict[str, Any]) -> None:
    """An encoder built for one image size (vit) pretrained on the source cannot take
    target images of another size: refuse before the source is pretrained."""
    from model_lifecycle.models.registry import fixes_image_size  # noqa: PLC0415

    source, target = groups["source.ingest"].size_hw, groups["ingest"].size_hw
    arch = groups["source.pretrain"].arch
    if groups["finetune"].init == "pretrained" and fixes_image_size(arch) \
            and source != target:
        raise LifecycleError(
            f"source.pretrain.arch '{arch}' is built for one image size, and the source "
            f"images ({source[0]}×{source[1]}, source.ingest.image_size) differ from the "
            f"target's ({target[0]}×{target[1]}, ingest.image_size): make them equal.")


def _check_structured_pruning(groups: dict[str, Any]) -> None:
    """Structured pruning of a transformer is refused by the pruning node; in a run that
    trains the model first, refuse it here, before hours of (pre)training."""
    prune, finetune = groups["compress"].prune, groups["finetune"]
    if prune.method != "structured":
        return
    source = groups.get("pretrain") if finetune.init == "pretrained" else finetune
    if source is None:
        return
    from torch import nn  # noqa: PLC0415 - a run that trains imports it anyway

    from model_lifecycle.models.registry import shape_only  # noqa: PLC0415

    try:
        model = shape_only(source.arch, 3, **source.arch_kwargs)
    except LifecycleError:
        return  # an architecture the images decide: the node checks
    if any(isinstance(m, nn.MultiheadAttention) for m in model.modules()):
        raise LifecycleError(
            f"compress.prune.method is structured, which cannot shrink the attention layers "
            f"of '{source.arch}': set compress.prune.method: unstructured and "
            "compress.prune.structured: null for a transformer.")


def _skip_meta_training(pipeline: Pipeline, catalog: DataCatalog) -> None:
    """``fewshot.encoders`` does not list ``meta_trained``: the meta-training node, which
    reads the same parameters, returns at once without an encoder, and its outputs are
    in-memory for this run, so no ``fewshot_encoder`` version is written and no
    meta-training metric logged. (Kedro has no conditional nodes and saves no None.)"""
    for node in pipeline.nodes:
        if node.name.rpartition(".")[2] == META_TRAIN_NODE:
            for name in node.outputs:
                _replace(catalog, name, MemoryDataset())


def _replace(catalog: DataCatalog, name: str, dataset: MemoryDataset) -> None:
    """``catalog[name] = dataset`` without Kedro's "Replacing dataset" warning: the
    preflight means to, and says why in its own log line or error."""
    logger = logging.getLogger("kedro.io.data_catalog")
    level = logger.level
    logger.setLevel(logging.ERROR)
    try:
        catalog[name] = dataset
    finally:
        logger.setLevel(level)


def _no_such_version(name: str, version: str, catalog: DataCatalog) -> str:
    """One sentence for ``--load-versions`` naming a version that was never saved."""
    folder = Path(str(getattr(catalog[name], "_filepath", "")))
    # a version is a folder holding the file (`make clean-data` of old left them empty)
    versions = sorted(p.name for p in folder.iterdir() if (p / folder.name).exists()) \
        if folder.is_dir() else []
    listed = (f"the versions under {folder} are {', '.join(versions[-3:])}"
              + (" (the latest three)" if len(versions) > 3 else "") if versions
              else "it has no saved version")
    return (f"--load-versions asks for version {version} of '{name}', which does not exist: "
            f"{listed}.")


def _every_reader_ruled(pipeline: Pipeline, dataset: str, rules: list[Rule]) -> bool:
    """Whether every node reading ``dataset`` reads a parameter group with a rule for
    it: a node no rule speaks for (``evaluate`` reading ``finetuned_model`` in a run
    that also trains the robust model) needs the dataset, and its absence is reported."""
    ruled = {f"params:{group}" for group, _needed, _instead in rules}
    return all(ruled & set(node.inputs) for node in pipeline.nodes if dataset in node.inputs)


def _check_lora_targets(groups: dict[str, Any], pipeline: Pipeline) -> None:
    """A LoRA target pattern matching no layer of the architecture stops the run here,
    not after pretraining (the node checks again on the model it adapts). With
    ``init: pretrained`` the architecture is that of the pretrain group whose encoder
    this run trains (``pretrain``, or ``source.pretrain`` in ``transfer``); an encoder
    from an earlier run is left to the node, as this run's parameters do not describe it."""
    finetune = groups["finetune"]
    if finetune.strategy != "lora" or not finetune.lora.target_modules:
        return
    from model_lifecycle.models.lora import check_targets  # noqa: PLC0415 - torch: LoRA only

    if finetune.init != "pretrained":
        check_targets(finetune.arch, finetune.arch_kwargs, finetune.lora.target_modules)
        return
    produced = pipeline.all_outputs()
    for node in pipeline.nodes:
        if "params:finetune" not in node.inputs:
            continue
        for name in node.inputs:
            if name.endswith("pretrained_encoder") and name in produced:
                pretrain = groups[name.removesuffix("pretrained_encoder") + "pretrain"]
                check_targets(pretrain.arch, pretrain.arch_kwargs,
                              finetune.lora.target_modules)


def _training_stages(groups: dict[str, Any]) -> dict[str, Any]:
    """The training settings of this run's parameter groups, by key, whose batch size
    and time budget a distributed run must check."""
    stages = {"pretrain": groups.get("pretrain"), "finetune": groups.get("finetune")}
    if "finetune" in groups:
        stages["finetune.adversarial"] = groups["finetune"].adversarial
    if "compress" in groups:
        stages["compress.prune.recovery"] = groups["compress"].prune.recovery
        stages["compress.distill"] = groups["compress"].distill
    return {key: value for key, value in stages.items() if value is not None}


def _check_groups(parameters: dict[str, Any], overrides: frozenset[str]) -> None:
    """A top-level parameter key that is no parameter group is a typo, not a new group."""
    for name in sorted(parameters or {}):
        if name in NAMESPACES:
            _check_namespace(name, parameters[name], overrides)
        elif name not in PARAMETER_MODELS:
            where = ("given with kedro run --params" if name in overrides
                     else "in the conf/ parameter files")
            raise LifecycleError(
                f"Unknown parameter group '{name}' {where}: the groups are "
                f"{', '.join(sorted([*PARAMETER_MODELS, *NAMESPACES]))}.")


def _check_namespace(namespace: str, groups: Any, overrides: frozenset[str]) -> None:
    allowed = NAMESPACES[namespace]
    for name in sorted(groups or {}) if isinstance(groups, dict) else [repr(groups)]:
        if name not in allowed:
            where = ("given with kedro run --params" if f"{namespace}.{name}" in overrides
                     else "in the conf/ parameter files")
            raise LifecycleError(
                f"Unknown parameter group '{namespace}.{name}' {where}: the groups under "
                f"'{namespace}' are {', '.join(allowed)}.")


def _missing_sentence(missing: list[str], otherwise: list[str], catalog: DataCatalog) -> str:
    order = [*LIFECYCLE, *OPTIONAL, *BEYOND, "__default__"]
    command = ",".join(sorted(_producers(missing, catalog), key=order.index))
    names = ", ".join(f"'{name}'" for name in missing)
    alternatives = "".join(f", {text}" for text in otherwise)
    if len(missing) == 1:
        return (f"Input {names} has never been produced: run "
                f"`kedro run --pipelines={command}` first{alternatives}.")
    return (f"Inputs {names} have never been produced: run "
            f"`kedro run --pipelines={command}` first, which produces them all"
            f"{alternatives}.")


def _producers(missing: list[str], catalog: DataCatalog) -> set[str]:
    """The pipelines that produce ``missing`` and, in turn, whatever of their own inputs
    does not exist either: one command that runs (``compress`` on a fresh clone needs
    ``finetune``, which needs ``pretrain``'s encoder, and so on back to ``ingest``)."""
    chosen: set[str] = set()
    produced: set[str] = set()  # by the command named, which runs before this pipeline
    queue = list(missing)
    while queue:
        name = _producer(queue.pop())
        if name in chosen:
            continue
        chosen.add(name)
        if name == "__default__":
            continue
        stage = importlib.import_module(f"model_lifecycle.pipelines.{name}").create_pipeline()
        produced |= stage.all_outputs()
        queue += [dataset for dataset in sorted(stage.inputs())
                  if not dataset.startswith("params:") and dataset != "parameters"
                  and dataset not in produced and not catalog.exists(dataset)
                  and _needed(dataset, stage, catalog)]
    return chosen


def _needed(dataset: str, stage: Pipeline, catalog: DataCatalog) -> bool:
    """Whether ``stage`` needs ``dataset`` under this run's parameters: not when the
    rules of OPTIONAL_INPUTS for the groups it reads all say it can do without."""
    groups = {group: parse_params(PARAMETER_MODELS[group], catalog.load(f"params:{group}"),
                                  group)
              for group, _needed, _instead in OPTIONAL_INPUTS.get(dataset, [])
              if f"params:{group}" in stage.inputs()}
    rules, needed_by = _needed_by(dataset, groups)
    return not rules or bool(needed_by)


def _needed_by(dataset: str, groups: dict[str, Any]) -> tuple[list[Rule], list[str]]:
    """The rules of OPTIONAL_INPUTS for ``dataset`` that speak for one of ``groups``
    (validated parameter groups), and how to do without it for each that needs it."""
    rules = [rule for rule in OPTIONAL_INPUTS.get(dataset, []) if rule[0] in groups]
    return rules, [instead for group, needed, instead in rules if needed(groups[group])]


def _in_memory(catalog: DataCatalog, name: str) -> bool:
    """Whether ``name`` is a dataset no run saves (no catalog entry: Kedro's default
    MemoryDataset)."""
    get_type = getattr(catalog, "get_type", None)  # Kedro >= 1.0's catalog
    return bool(get_type) and (get_type(name) or "").endswith(".MemoryDataset")


def _producing_nodes(datasets: list[str]) -> list[str]:
    """The names of the nodes that output ``datasets``, in the first pipeline (lifecycle
    order) that outputs each."""
    found = []
    for dataset in datasets:
        name = _producer(dataset)
        if name == "__default__":
            continue
        stage = importlib.import_module(f"model_lifecycle.pipelines.{name}").create_pipeline()
        found += [node.name for node in stage.nodes
                  if dataset in node.outputs and node.name not in found]
    return found


def _producer(dataset: str) -> str:
    """The first pipeline (lifecycle order, the optional ones, then the others) that outputs
    ``dataset``.

    Built directly from the pipeline modules: during ``kedro run --pipelines=x``
    Kedro's registry holds only ``x``.
    """
    for name in (*LIFECYCLE, *OPTIONAL, *BEYOND):
        module = importlib.import_module(f"model_lifecycle.pipelines.{name}")
        if dataset in module.create_pipeline().all_outputs():
            return name
    return "__default__"


class TrainedOnHook:
    """Every variant's model remembers the images it was made from (their fingerprint and
    shape, saved with the model); a node handed a variant together with other ``images``
    (re-ingested since, at another size or from another folder) stops with one sentence
    instead of failing inside the node or, worse, measuring the model on images that
    may include its own training images. A variant the run's parameters leave out (an
    optional input, per ``preflight``) is not checked: the node does not use it."""

    def __init__(self, preflight: PreflightHook) -> None:
        self._preflight = preflight

    @hook_impl
    def before_node_run(self, node: Any, inputs: dict[str, Any]) -> None:
        _check_report_measured(inputs)
        self._check_made_from(inputs)
        images = _images_of(inputs)
        if images is None:
            return
        encoder = (getattr(inputs.get("pretrained_encoder"), "trained_on", None) or {})
        if "pretrained_encoder" not in self._preflight.unneeded \
                and encoder.get("images") not in (None, images.fingerprint()):
            log.warning("%s reads a pretrained_encoder pretrained on other images than the "
                        "latest (re-ingested since): images now in val or test may have been "
                        "among its training images; `kedro run --pipelines=pretrain` first "
                        "for a clean measure.", getattr(node, "name", "this node"))
        for name, value in inputs.items():
            made_from = getattr(value, "trained_on", None)
            if name in _VARIANT_DATASETS and name not in self._preflight.unneeded \
                    and isinstance(made_from, dict) \
                    and made_from.get("images") != images.fingerprint():
                then = "×".join(map(str, made_from.get("image_shape", [])))
                now = "×".join(map(str, images.image_shape))
                which = (f"(shape {then}) than the latest images ({now})" if then != now
                         else f"than the latest images (the same shape, {now}, other pixels "
                              "or labels)")
                raise LifecycleError(
                    f"The latest {name} was made from other images {which}: run `kedro run "
                    f"--pipelines={_VARIANT_DATASETS[name]}` again and the stages after it, "
                    "or load the images it was made from with --load-versions "
                    "images:<version>.")

    def _check_made_from(self, inputs: dict[str, Any]) -> None:
        """A compressed variant read beside the fine-tuned model must have been made from
        that model: after `--pipelines=finetune` (another architecture, say), an
        `evaluate,register` run would otherwise put the new fine-tuned model beside the
        old one's compressed variants, and register them as one lifecycle."""
        from model_lifecycle.models.structure import model_id  # noqa: PLC0415 - torch

        source = baseline().dataset
        latest = model_id(inputs.get(source))
        if latest is None:
            return
        for variant in variants():
            model = inputs.get(variant.dataset)
            if variant.produced_by != "compress" or variant.dataset in self._preflight.unneeded:
                continue
            made_from = ((getattr(model, "trained_on", None) or {}).get("made_from") or {}
                         ).get(source)
            if made_from is not None and made_from != latest:
                raise LifecycleError(
                    f"The latest {variant.dataset} was made from another {source} than the "
                    f"latest (made again since by `kedro run --pipelines="
                    f"{baseline().produced_by}`, or another version pinned with "
                    f"--load-versions): run `kedro run --pipelines=compress` again and the "
                    f"stages after it, or pin the {source} it was made from.")

    @hook_impl
    def after_node_run(self, node: Any, inputs: dict[str, Any],
                       outputs: dict[str, Any]) -> None:
        images = _images_of(inputs)
        if images is None:
            return
        from model_lifecycle.models.structure import model_id, weights_id  # noqa: PLC0415

        # the variants the node read (the fine-tuned model a compressed one came from)
        made_from = {name: model_id(value) for name, value in inputs.items()
                     if name in _VARIANT_DATASETS and model_id(value) is not None}
        for value in outputs.values():
            if hasattr(value, "state_dict"):  # every model: variants and encoders
                value.trained_on = {"images": images.fingerprint(),
                                    "image_shape": list(images.image_shape),
                                    # which model this is: the report's rows name it
                                    "model_id": weights_id(value),
                                    **({"made_from": made_from} if made_from else {})}


# The variants' datasets and the pipeline that makes each.
_VARIANT_DATASETS = {v.dataset: v.produced_by for v in variants()}


def _check_report_measured(inputs: dict[str, Any]) -> None:
    """A node that reads the evaluation report beside the models (register) must get the
    models the report measured: a variant made again since (`--pipelines=finetune`, then
    `--pipelines=register`) would be registered with another model's figures."""
    report = inputs.get("evaluation_report")
    if not hasattr(report, "columns") or "model_id" not in report.columns:
        return
    from model_lifecycle.models.structure import model_id  # noqa: PLC0415 - torch

    measured = dict(zip(report["variant"], report["model_id"], strict=True))
    for variant in variants():
        model = inputs.get(variant.dataset)
        made = model_id(model)
        if made and isinstance(measured.get(variant.name), str) \
                and measured[variant.name] != made:
            raise LifecycleError(
                f"The evaluation report measured another {variant.dataset} than the one "
                f"loaded (made since by `kedro run --pipelines={variant.produced_by}`, or "
                "another version pinned with --load-versions): run `kedro run "
                "--pipelines=explain,evaluate` first, so that each version is registered "
                "with its own figures.")


def _images_of(inputs: dict[str, Any]) -> Any:
    """The ``images`` a node reads (an ImageSet), or None."""
    images = inputs.get("images")
    return images if hasattr(images, "fingerprint") else None


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
        _collapse_run_stack()  # one end_run: against a tracking server MLflow prints
        # "View run … at: <url>" at each, some twenty lines for the default lifecycle
        while (active := mlflow.active_run()) and active.info.run_id != self._caller_run_id:
            mlflow.end_run()

    @hook_impl(tryfirst=True)
    def on_pipeline_error(self) -> None:
        """Leave the failed run on the active-run stack once, so that kedro-mlflow marks
        it FAILED once (and logs "was closed because of an error" once, not once per
        node it re-opened it for)."""
        _collapse_run_stack()


def _collapse_run_stack() -> None:
    """The active-run stack with each run once where kedro-mlflow pushed it again."""
    stack = _active_run_stack()
    if stack is None:
        return
    kept = []
    for run in stack:
        if not kept or kept[-1].info.run_id != run.info.run_id:
            kept.append(run)
    stack[:] = kept


class BatchedParamsMlflowHook(MlflowHook):
    """kedro-mlflow's hook (registered in its place: ``settings.py``), with each node's
    parameters sent in one request.

    kedro-mlflow logs a node's parameters one ``mlflow.log_param`` at a time, and again
    for every node that reads the same group: 763 requests for the tiny default
    lifecycle, whose run against the tracking server of ``make server`` this hook takes
    from 55.5 s to 53.0 s (36.5 s to 35.2 s against SQLite; docs/results.md, "The test
    suite's time"). This hook keeps kedro-mlflow's choice of what to log (flattening,
    names, its strategy for values too long for MLflow, which it still applies itself)
    and sends what this run has not logged yet with the same value in one ``log_batch``
    per node. MLflow's own rule is unchanged: a parameter logged again with another
    value is refused."""

    def __init__(self) -> None:
        super().__init__()
        self._pending: dict[str, Any] = {}
        self._logged: dict[str, str] = {}

    @hook_impl
    def after_context_created(self, context: Any) -> None:
        """kedro-mlflow's set-up, with a relative SQLite store (``sqlite:///mlflow.db``)
        and a relative or unset artifact location taken in the project folder:
        kedro-mlflow leaves a relative SQLite path to the working directory, so `kedro
        run` from a sub-folder (`src/`, `notebooks/`) tracked into a second store there,
        which `make ui` and `make serve` never read."""
        loader = context.config_loader
        loader.config_patterns.setdefault("mlflow", ["mlflow*", "mlflow*/**", "**/mlflow*"])
        try:
            conf = loader["mlflow"]
        except MissingConfigException:  # kedro-mlflow's defaults, as an empty file gives
            conf = None
        loader["mlflow"] = in_project(conf or {}, Path(context.project_path))
        super().after_context_created(context)

    @hook_impl
    def before_pipeline_run(self, run_params: dict[str, Any], pipeline: Pipeline,
                            catalog: DataCatalog) -> None:
        self._logged = {}
        super().before_pipeline_run(run_params=run_params, pipeline=pipeline,
                                    catalog=catalog)

    @hook_impl
    def before_node_run(self, node: Any, catalog: DataCatalog, inputs: dict[str, Any],
                        is_async: bool) -> None:
        self._pending = {}
        super().before_node_run(node=node, catalog=catalog, inputs=inputs,
                                is_async=is_async)
        fresh = {name: value for name, value in self._pending.items()
                 if self._logged.get(name) != str(value)}
        if fresh:
            mlflow.log_params(fresh)
            self._logged.update({name: str(value) for name, value in fresh.items()})

    def _log_param(self, name: str, value: Any) -> None:
        if len(str(value)) <= MAX_PARAM_VAL_LENGTH:  # what kedro-mlflow logs as it is
            self._pending[name] = value
        else:
            super()._log_param(name, value)


def in_project(conf: dict[str, Any], project: Path) -> dict[str, Any]:
    """``mlflow.yml``'s settings with relative SQLite stores made absolute in ``project``,
    and the artifacts of a new experiment in ``project/mlruns`` when unset (MLflow puts
    them in ``./mlruns`` of the working directory). No tracking URI at all (the file
    `kedro mlflow init` writes, without MLFLOW_TRACKING_URI set) is the project's own
    store: kedro-mlflow's default, a file store, is one MLflow 3 refuses."""
    server = dict(conf.get("server") or {})
    if server.get("mlflow_tracking_uri") is None and not os.environ.get("MLFLOW_TRACKING_URI"):
        server["mlflow_tracking_uri"] = "sqlite:///mlflow.db"
    in_the_project = False  # a store in the project folder: its artifacts go there too
    for key in ("mlflow_tracking_uri", "mlflow_registry_uri"):
        uri = server.get(key)
        if isinstance(uri, str) and uri.startswith("sqlite:///") \
                and not uri.startswith("sqlite:////"):
            server[key] = f"sqlite:///{project / uri.removeprefix('sqlite:///')}"
            in_the_project |= key == "mlflow_tracking_uri"
    tracking = dict(conf.get("tracking") or {})
    experiment = dict(tracking.get("experiment") or {})
    created = dict(experiment.get("create_experiment_kwargs") or {})
    if created.get("artifact_location") is None and in_the_project:
        created["artifact_location"] = "mlruns"  # kedro-mlflow: relative to the project
    experiment["create_experiment_kwargs"] = created
    tracking["experiment"] = experiment
    return {**conf, "server": server, "tracking": tracking}


def _active_run_stack() -> list | None:
    """MLflow's stack of active runs of this thread (a private structure: None when a
    future MLflow moves it, and the duplicate messages simply come back)."""
    holder = getattr(mlflow.tracking.fluent, "_active_run_stack", None)
    try:
        return holder.get()
    except AttributeError:
        return None


# Tags that let a later run tell whether this one's process is still alive.
PID_TAG, HOST_TAG = "model_lifecycle.pid", "model_lifecycle.host"
EXPERIMENT_KIND = ("mlflow.experimentKind", "custom_model_development")


class RunBookkeepingHook:
    """Once kedro-mlflow has opened the pipeline's run: tag it with this process's id
    and host; mark earlier runs of the experiment that still say RUNNING but whose
    process on this host is gone (killed from outside) as KILLED; and declare the
    experiment a model-development one, so the MLflow UI opens it on runs and models
    rather than on GenAI traces."""

    @hook_impl(trylast=True)
    def before_pipeline_run(self) -> None:
        run = mlflow.active_run()
        if run is None:  # tracking disabled for this pipeline
            return
        client = mlflow.MlflowClient()
        host = socket.gethostname()
        client.set_tag(run.info.run_id, PID_TAG, str(os.getpid()))
        client.set_tag(run.info.run_id, HOST_TAG, host)
        experiment = client.get_experiment(run.info.experiment_id)
        if experiment.tags.get(EXPERIMENT_KIND[0]) is None:
            try:
                client.set_experiment_tag(experiment.experiment_id, *EXPERIMENT_KIND)
            except MlflowException:
                # two runs starting at once on a tracking server: the other one tagged
                # the new experiment first (PostgreSQL refuses the second insert)
                tags = client.get_experiment(experiment.experiment_id).tags
                if tags.get(EXPERIMENT_KIND[0]) is None:
                    raise
        stale = client.search_runs(
            [experiment.experiment_id],
            filter_string=f"attributes.status = 'RUNNING' and tags.`{HOST_TAG}` = '{host}'")
        for other in stale:
            pid = int(other.data.tags.get(PID_TAG, "0"))
            if other.info.run_id != run.info.run_id and pid and not process_alive(pid):
                client.set_terminated(other.info.run_id, "KILLED")
                log.warning("MLflow run %s (process %d on %s) was still RUNNING but its "
                            "process is gone: marked KILLED.", other.info.run_id, pid, host)


class NodeTimingHook:
    """Each node's wall seconds, from loading its first input to saving its last output,
    as the metric ``seconds.<node>`` of the pipeline's MLflow run: the MLflow UI shows
    where a run's time went and compares it across runs. Logged in one call when the
    pipeline ends (before kedro-mlflow closes the run); nothing for a failed run or one
    without MLflow tracking. Spans are kept per node, so a threaded runner's
    overlapping nodes are timed each on its own."""

    def __init__(self) -> None:
        self._spans: dict[str, list[float]] = {}

    def _begin(self, name: str) -> None:
        if name not in self._spans:
            now = time.perf_counter()
            self._spans[name] = [now, now]

    def _end(self, name: str) -> None:
        if name in self._spans:
            self._spans[name][1] = time.perf_counter()

    @hook_impl
    def before_pipeline_run(self) -> None:
        self._spans = {}

    @hook_impl
    def before_dataset_loaded(self, node: Any) -> None:
        self._begin(node.name)

    @hook_impl
    def before_node_run(self, node: Any) -> None:
        RUNNING_NODE[:] = [node.name]  # what an interrupted run names to go on from
        self._begin(node.name)

    @hook_impl
    def after_node_run(self, node: Any) -> None:
        self._end(node.name)

    @hook_impl
    def after_dataset_saved(self, node: Any) -> None:
        self._end(node.name)

    @hook_impl(tryfirst=True)
    def after_pipeline_run(self) -> None:
        spans, self._spans = self._spans, {}
        run = mlflow.active_run()
        if spans and run is not None:
            # through the client: the fluent API would also copy each figure to every
            # model the run has logged (MLflow 3), and they describe the run, not a model
            now = int(time.time() * 1000)
            mlflow.MlflowClient().log_batch(run.info.run_id, metrics=[
                Metric(f"seconds.{name}", round(end - start, 3), now, 0)
                for name, (start, end) in spans.items()])

    @hook_impl
    def on_pipeline_error(self) -> None:
        self._spans = {}  # a failed run's times are no measurement


class TrackingServerHook:
    """Before kedro-mlflow opens anything: a tracking or registry URI that names an HTTP
    server must answer within seconds, with its store readable, or the run stops here
    with one sentence. (kedro-mlflow looks up the experiment as soon as the context
    exists, and MLflow's client retries a dead server for minutes.)"""

    @hook_impl(tryfirst=True)
    def after_context_created(self, context: Any) -> None:
        if mlflow.active_run() is not None:  # the caller's run: kedro-mlflow ignores conf
            return
        try:
            server = (context.config_loader["mlflow"] or {}).get("server") or {}
        except MissingConfigException:
            return
        uris = {"mlflow_tracking_uri": server.get("mlflow_tracking_uri")
                or os.environ.get("MLFLOW_TRACKING_URI"),
                "mlflow_registry_uri": server.get("mlflow_registry_uri")}
        checked = set()
        for key, uri in uris.items():
            if not uri or not uri.startswith(("http://", "https://")) or uri in checked:
                continue
            checked.add(uri)
            if (problem := probe(uri)) is not None:
                raise LifecycleError(_server_sentence(uri, key, problem,
                                                      _mlflow_file(context, key)))
        if uris["mlflow_tracking_uri"] in checked:
            _create_experiment(uris["mlflow_tracking_uri"],
                               context.config_loader["mlflow"].get("tracking") or {})


def _create_experiment(uri: str, tracking: dict[str, Any]) -> None:
    """Create the run's experiment on a tracking server if it is missing, tolerating a
    run that creates it in the same instant (kedro-mlflow's get-or-create does not: two
    runs starting at once on a fresh server would fail one of them)."""
    experiment = tracking.get("experiment") or {}
    kwargs = experiment.get("create_experiment_kwargs") or {}
    if not experiment.get("name") or kwargs.get("artifact_location"):
        return  # kedro-mlflow's defaults / path resolution apply
    client = mlflow.MlflowClient(tracking_uri=uri)
    if client.get_experiment_by_name(experiment["name"]) is None:
        try:
            client.create_experiment(experiment["name"], tags=kwargs.get("tags"))
        except MlflowException as exc:
            if exc.error_code != "RESOURCE_ALREADY_EXISTS":
                raise


def _mlflow_file(context: Any, key: str) -> str | None:
    """The conf file that sets ``server.<key>``: the run environment's, else base's."""
    loader = context.config_loader
    conf = Path(loader.conf_source)
    for env in (loader.env or loader.default_run_env, loader.base_env):
        for path in sorted((conf / str(env)).glob("mlflow*.yml")):
            if key in path.read_text():
                return f"{conf.name}/{env}/{path.name}"
    return None


def _server_sentence(uri: str, key: str, problem: Any, where: str | None) -> str:
    source = f"server.{key} in {where}" if where else "MLFLOW_TRACKING_URI"
    what = f"MLflow tracking server {uri} ({source}) {problem}"
    if problem.kind == "store":
        return (f"{what}: check its database; for the project's own server, "
                f"`make server-stop` then `make server` restarts PostgreSQL too.")
    if problem.kind == "foreign":
        return f"{what}: check the address in {source}."
    if where and where.split("/")[1] == "server":
        return (f"{what}: start it with `make server`, or run without --env=server to "
                f"log to the embedded SQLite store.")
    return (f"{what}: start it (`make server` starts the project's own), or set "
            f"{source} to a running server or to sqlite:///mlflow.db.")
