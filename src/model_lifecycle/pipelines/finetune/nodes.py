"""Nodes of the ``finetune`` pipeline."""

from __future__ import annotations

import copy
import logging
from typing import Any

import numpy as np
from torch import nn

from model_lifecycle.augment.config import policy_from_artifact
from model_lifecycle.data.imageset import ImageSet
from model_lifecycle.data.splits import checked_splits
from model_lifecycle.errors import LifecycleError
from model_lifecycle.models.adapt import apply_strategy, load_torchvision_weights
from model_lifecycle.models.classifier import Classifier
from model_lifecycle.models.lora import (
    adapter_state_dict,
    add_lora,
    default_targets,
    merge_lora,
)
from model_lifecycle.models.registry import build_model
from model_lifecycle.models.structure import model_id
from model_lifecycle.models.transfer import match_channels
from model_lifecycle.params import parse_params
from model_lifecycle.training.config import RuntimeParams
from model_lifecycle.training.finetune import FinetuneParams, finetune
from model_lifecycle.training.setup import history_for_mlflow, prepare_runtime

log = logging.getLogger(__name__)


def finetune_model(images: ImageSet, splits: dict[str, np.ndarray], policy: dict[str, Any],
                   pretrained_encoder: Classifier | None, params: dict[str, Any],
                   runtime: dict[str, Any], *, adversarial: bool = False,
                   start: Classifier | None = None
                   ) -> tuple[Classifier, dict[str, list[dict[str, float]]]]:
    """Fine-tune from ``finetune.init`` (or a copy of ``start``) with
    ``finetune.strategy``; returns the model (best epoch on val) and its metric history,
    test accuracy included. ``adversarial``: train on adversarial examples
    (``finetune.adversarial``) instead of clean images."""
    model, history, _ = finetune_with_adapter(images, splits, policy, pretrained_encoder,
                                              params, runtime, adversarial=adversarial,
                                              start=start)
    return model, history


def finetune_with_adapter(images: ImageSet, splits: dict[str, np.ndarray],
                          policy: dict[str, Any], pretrained_encoder: Classifier | None,
                          params: dict[str, Any], runtime: dict[str, Any], *,
                          adversarial: bool = False, start: Classifier | None = None
                          ) -> tuple[Classifier, dict[str, list[dict[str, float]]],
                                     dict[str, Any]]:
    """:func:`finetune_model`, and the LoRA adapter for the ``lora_adapter`` dataset.

    With ``strategy: lora`` the adapters train, are saved alone (their weights and the
    head), then merged, so the model returned is a plain ``Classifier`` of the starting
    architecture. With another strategy the adapter holds no tensors and its metadata
    names the strategy."""
    config = parse_params(FinetuneParams, params, "finetune")
    run = parse_params(RuntimeParams, runtime, "runtime")
    device = prepare_runtime(run)
    model = (initial_model(config, pretrained_encoder, images) if start is None
             else copy.deepcopy(start).train())  # the input model stays as it was
    if start is not None:  # its trained head is kept, not refitted as a linear probe
        config = config.model_copy(update={"head_init": "random"})
    origin = start if start is not None else (
        pretrained_encoder if config.init == "pretrained" else None)
    # what a checkpoint of this training must have started from to be resumed
    model.trained_from = model_id(origin)
    model.trained_images = images.fingerprint()
    tuner, targets = None, config.lora.target_modules or default_targets(model)
    if config.strategy == "lora":
        if config.lora.lr is not None:
            config = config.model_copy(update={"optimizer": config.optimizer.model_copy(
                update={"lr": config.lora.lr})})
        tuner = add_lora(model, rank=config.lora.rank, alpha=config.lora.alpha,
                         dropout=config.lora.dropout, target_modules=targets)
    counts = apply_strategy(model, config.strategy, frozen_stages=config.frozen_stages)
    name = "robust finetune" if adversarial else "finetune"
    log.info("%s (%s, %s): %d of %d parameters trainable", name,
             config.init if start is None else "from the fine-tuned model", config.strategy,
             counts["trainable_params"], counts["total_params"])
    result, scores = finetune(model, images.images, images.labels,
                              checked_splits(images, splits),
                              policy_from_artifact(policy, "supervised"), config, run, device,
                              name=name, adversarial=config.adversarial if adversarial else None)
    log.info(name + ": %.2f epochs in %.0f s, val accuracy %.4f, test accuracy %.4f",
             scores["epochs"], scores["train_seconds"], scores["val_accuracy"],
             scores["test_accuracy"])
    adapter: dict[str, Any] = {"metadata": {"strategy": config.strategy}, "tensors": {}}
    if tuner is not None:
        model = model.cpu()
        adapter = {"metadata": {"strategy": "lora", "init": config.init, "base": dict(model.spec),
                                **config.lora.model_dump(), "target_modules": targets,
                                **counts},
                   "tensors": adapter_state_dict(model)}
        model = merge_lora(tuner)
    model.requires_grad_(True)
    return model.cpu().eval(), history_for_mlflow(
        result.history, images_per_s=result.images_per_s, best_epoch=result.best_epoch,
        **scores, **counts), adapter


def initial_model(config: FinetuneParams, pretrained: Classifier | None,
                  images: ImageSet) -> Classifier:
    """The starting point: a copy of the pretrained model with a fresh head, a new model,
    or a new model holding torchvision weights from a local file."""
    n_classes, channels = len(images.class_names), images.image_shape[0]
    if config.init == "pretrained":
        if pretrained is None:
            raise LifecycleError("finetune.init is 'pretrained' but no pretrained_encoder "
                                 "exists: run `kedro run --pipelines=pretrain` first, or set "
                                 "finetune.init: scratch.")
        model = copy.deepcopy(pretrained)  # the input model stays as it was
        converted = match_channels(model, channels)
        if converted:  # an encoder pretrained on other data (the `transfer` pipeline)
            log.info("finetune: the pretrained encoder's %s", converted)
        model.head = nn.Linear(model.encoder.feature_dim, n_classes)
        model.spec["num_classes"] = n_classes
        return model
    model = build_model(config.arch, n_classes, channels, input_size=images.image_shape[1:],
                        **config.arch_kwargs)
    if config.init == "torchvision_weights":
        moved = load_torchvision_weights(model, config.weights_path)
        log.info("finetune: %d of %d encoder tensors from %s", moved["loaded_tensors"],
                 moved["encoder_tensors"], config.weights_path)
    return model
