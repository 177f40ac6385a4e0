"""Nodes of the ``fewshot`` pipeline."""

from __future__ import annotations

import copy
import logging
from typing import Any

import numpy as np
import pandas as pd
import torch
from matplotlib.figure import Figure

from model_lifecycle.augment.config import policy_from_artifact
from model_lifecycle.data.episodes import check_episodes, seeded_episodes
from model_lifecycle.data.imageset import ImageSet
from model_lifecycle.data.splits import checked_splits
from model_lifecycle.errors import LifecycleError
from model_lifecycle.evaluation.fewshot import (
    COLUMNS,
    encoder_features,
    fewshot_figure,
    fewshot_metrics,
    fewshot_rows,
)
from model_lifecycle.models.classifier import Classifier
from model_lifecycle.models.registry import build_model
from model_lifecycle.params import parse_params
from model_lifecycle.training.config import RuntimeParams
from model_lifecycle.training.fewshot import meta_train
from model_lifecycle.training.fewshot_config import FewshotParams
from model_lifecycle.training.setup import history_for_mlflow, prepare_runtime

log = logging.getLogger(__name__)

# What meta_train_encoder returns in place of an encoder when fewshot.encoders does not
# list meta_trained: Kedro saves no None, and the run's hook (PreflightHook) has made the
# node's outputs in-memory for that run, so nothing is versioned or logged.
NOT_META_TRAINED = "not meta-trained: fewshot.encoders does not list meta_trained"

PRODUCERS = {"pretrained": ("pretrained_encoder", "pretrain"),
             "finetuned": ("finetuned_model", "finetune"),
             "supervised": ("finetuned_model", "finetune")}


def meta_train_encoder(images: ImageSet, splits: dict[str, np.ndarray], novel: ImageSet,
                       policy: dict[str, Any], pretrained_encoder: Classifier | None,
                       finetuned_model: Classifier | None, params: dict[str, Any],
                       runtime: dict[str, Any]
                       ) -> tuple[Classifier, dict[str, list[dict[str, float]]]]:
    """Meta-train an encoder on episodes of the base classes (``fewshot.meta_train``),
    from ``fewshot.meta_train.init``; returns it and its metric history. The novel
    images are only checked here (can they fill the evaluation's episodes?), before any
    training. When ``fewshot.encoders`` does not list ``meta_trained`` nothing is
    trained: returns :data:`NOT_META_TRAINED` and no history."""
    config = parse_params(FewshotParams, params, "fewshot")
    run = parse_params(RuntimeParams, runtime, "runtime")
    check_novel(novel, config)
    if "meta_trained" not in config.encoders:
        log.info("fewshot: meta-training skipped: fewshot.encoders (%s) does not list "
                 "meta_trained", ", ".join(config.encoders))
        return NOT_META_TRAINED, {}
    device = prepare_runtime(run)
    init = config.meta_train.init
    if init == "scratch":
        model = build_model(config.arch, len(images.class_names), images.image_shape[0],
                            input_size=images.image_shape[1:], **config.arch_kwargs)
    else:
        start = pretrained_encoder if init == "pretrained" else finetuned_model
        reason = unusable(start, init, images)
        if reason:
            raise LifecycleError(f"fewshot.meta_train.init is '{init}' but {reason}, or set "
                                 "fewshot.meta_train.init: scratch.")
        model = copy.deepcopy(start)  # the input model stays as it was
    result, scores = meta_train(model, images.images, images.labels, images.class_names,
                                checked_splits(images, splits),
                                policy_from_artifact(policy, "supervised"), config.meta_train,
                                run, device)
    log.info("fewshot meta-train (from %s): %d episodes in %.0f s%s", init,
             scores["episodes"], scores["train_seconds"],
             f", val {config.meta_train.way}-way accuracy {scores['val_accuracy']:.4f}"
             if "val_accuracy" in scores else "")
    return model.cpu().eval(), history_for_mlflow(result.history, **scores)


def evaluate_fewshot(images: ImageSet, novel: ImageSet, pretrained_encoder: Classifier | None,
                     finetuned_model: Classifier | None, fewshot_encoder: Classifier,
                     params: dict[str, Any], runtime: dict[str, Any]
                     ) -> tuple[pd.DataFrame, dict[str, list[dict[str, float]]], Figure]:
    """Every encoder of ``fewshot.encoders`` answers the same seeded episodes of the novel
    classes with the Prototypical Networks head; returns the report (encoder, way, shot,
    accuracy, ci95, episodes), its metrics and a figure. An encoder that does not exist,
    or was trained on other classes than the base ones, is skipped with a logged reason."""
    config = parse_params(FewshotParams, params, "fewshot")
    run = parse_params(RuntimeParams, runtime, "runtime")
    check_novel(novel, config)
    device = prepare_runtime(run)
    episodes = seeded_episodes(novel.labels, way=config.way, shots=config.shots,
                               queries=config.queries, episodes=config.episodes,
                               seed=run.seed)
    candidates = {"pretrained": pretrained_encoder, "supervised": finetuned_model,
                  "meta_trained": fewshot_encoder}
    rows = []
    for name in config.encoders:
        if name == "scratch":
            torch.manual_seed(run.seed)
            model = build_model(config.arch, len(images.class_names), novel.image_shape[0],
                                input_size=novel.image_shape[1:], **config.arch_kwargs)
        else:
            model = candidates[name]
            reason = unusable(model, name, images)
            if reason:
                log.warning("fewshot: encoder '%s' skipped: %s.", name, reason)
                continue
        encoder = copy.deepcopy(model.encoder).to(device)  # the input model stays as it was
        features = encoder_features(encoder, novel.images, l2=config.feature_norm == "l2")
        rows += fewshot_rows(name, features, episodes)
    report = pd.DataFrame(rows, columns=list(COLUMNS))
    for row in report.itertuples():
        log.info("fewshot: %-12s %d-way %d-shot accuracy %.4f ± %.4f (%d episodes)",
                 row.encoder, row.way, row.shot, row.accuracy, row.ci95, row.episodes)
    return report, fewshot_metrics(report), fewshot_figure(report)


def check_novel(novel: ImageSet, config: FewshotParams) -> None:
    """Refuse a run whose novel images do not match ``fewshot.novel_classes`` or cannot
    fill the evaluation's episodes, in one sentence."""
    if not config.novel_classes:
        raise LifecycleError(
            "fewshot.novel_classes is empty: list the classes to hold out and run ingest "
            "and the training stages again (`kedro run --pipelines=__default__,fewshot "
            "--params \"fewshot.novel_classes=[...]\"`), so that no encoder has seen them.")
    if set(novel.class_names) != set(config.novel_classes):
        held = ", ".join(novel.class_names) or "no class"
        raise LifecycleError(
            f"The latest novel_images hold out {held} but fewshot.novel_classes is "
            f"{', '.join(config.novel_classes)}: run ingest and the training stages again "
            "with this hold-out (`kedro run --pipelines=__default__,fewshot`).")
    for shot in sorted(config.shots, reverse=True):  # the most demanding first
        check_episodes(novel.labels, novel.class_names, way=config.way, shot=shot,
                       queries=config.queries, pool="novel",
                       keys=("fewshot.way", "fewshot.shots", "fewshot.queries"))


def unusable(model: Classifier | None, name: str, images: ImageSet) -> str | None:
    """Why ``model`` cannot serve as the ``name`` encoder on the base ``images``, or None.

    A model whose head does not have one output per base class was trained on other
    classes (before the hold-out, most likely) and may have seen the novel images.
    """
    dataset, pipeline = PRODUCERS.get(name, ("fewshot_encoder", "fewshot"))
    if model is None:
        return f"no {dataset} exists: run `kedro run --pipelines={pipeline}` first"
    if model.spec.get("in_channels") != images.image_shape[0]:
        return (f"the latest {dataset} takes {model.spec.get('in_channels')} channel(s) and "
                f"the images have {images.image_shape[0]}: run `kedro run "
                f"--pipelines={pipeline}` again")
    if model.num_classes != len(images.class_names):
        return (f"the latest {dataset} has {model.num_classes} class outputs and the base "
                f"classes are {len(images.class_names)}, so it was trained before this "
                f"hold-out and may have seen the novel classes: run `kedro run "
                f"--pipelines={pipeline}` again")
    made_from = (getattr(model, "trained_on", None) or {}).get("images")
    if made_from is not None and made_from != images.fingerprint():
        return (f"the latest {dataset} was trained on other images than the latest base "
                "images (ingested since, perhaps with another hold-out), so it may have seen "
                f"the novel classes: run `kedro run --pipelines={pipeline}` again")
    return None
