"""Nodes of the ``pretrain`` pipeline."""

from __future__ import annotations

import logging
from typing import Any

import numpy as np

from model_lifecycle.augment.config import policy_from_artifact
from model_lifecycle.data.imageset import ImageSet
from model_lifecycle.data.splits import checked_splits
from model_lifecycle.models.classifier import Classifier
from model_lifecycle.models.registry import build_model
from model_lifecycle.params import parse_params
from model_lifecycle.training.config import RuntimeParams
from model_lifecycle.training.pretrain import PretrainParams, pretrain
from model_lifecycle.training.setup import history_for_mlflow, prepare_runtime

log = logging.getLogger(__name__)


def pretrain_encoder(images: ImageSet, splits: dict[str, np.ndarray], policy: dict[str, Any],
                     params: dict[str, Any], runtime: dict[str, Any], *,
                     group: str = "pretrain"
                     ) -> tuple[Classifier, dict[str, list[dict[str, float]]]]:
    """Self-supervised pretraining; returns the model (trained encoder, untrained head)
    and its metric history (loss per epoch, k-NN accuracy, linear-probe accuracy).
    ``group``: the parameter group ``params`` is, as messages name its keys."""
    config = parse_params(PretrainParams, params, group)
    run = parse_params(RuntimeParams, runtime, "runtime")
    device = prepare_runtime(run)
    model = build_model(config.arch, len(images.class_names), images.image_shape[0],
                        input_size=images.image_shape[1:], **config.arch_kwargs).to(device)
    result, quality = pretrain(model, images.images, images.labels,
                               checked_splits(images, splits),
                               policy_from_artifact(policy, "pretrain"), config, run, device,
                               group=group)
    log.info("%s (%s): %.2f epochs in %.0f s, k-NN accuracy %.4f, linear probe %.4f "
             "on val", group, config.method, quality["epochs"], quality["train_seconds"],
             quality["knn_accuracy"], quality["linear_probe_accuracy"])
    return model.cpu().eval(), history_for_mlflow(result.history, images_per_s=result.images_per_s,
                                                  **quality)


def pretrain_source_encoder(images: ImageSet, splits: dict[str, np.ndarray],
                            policy: dict[str, Any], params: dict[str, Any],
                            runtime: dict[str, Any]
                            ) -> tuple[Classifier, dict[str, list[dict[str, float]]]]:
    """:func:`pretrain_encoder` of the ``transfer`` pipeline's source data set."""
    return pretrain_encoder(images, splits, policy, params, runtime, group="source.pretrain")
