"""Pruning with recovery fine-tuning: the ``pruned`` variant from a fine-tuned model.

The recovery runs are the project's fine-tuning (``training.finetune``) with the
``compress.prune.recovery`` settings, on ``train_labeled`` with the supervised
augmentation, selected on ``val``; with ``recovery.teacher``, the distillation's training
(``distill_train.distill``) with the unpruned model as teacher instead.
"""

from __future__ import annotations

import logging

import numpy as np
import torch

from model_lifecycle.augment.config import SupervisedPolicy
from model_lifecycle.compression.config import DistillParams, PruneParams, RecoveryParams
from model_lifecycle.compression.distill_train import distill
from model_lifecycle.compression.prune import (
    make_permanent,
    prune_structured,
    prune_unstructured,
)
from model_lifecycle.models.classifier import Classifier
from model_lifecycle.models.structure import sparsity
from model_lifecycle.training.config import FinetuneParams, RuntimeParams
from model_lifecycle.training.finetune import finetune

log = logging.getLogger(__name__)

TAYLOR_BATCH = 64  # labeled images per Taylor-importance gradient


def recovery_params(recovery: RecoveryParams, epochs: float) -> FinetuneParams:
    """The fine-tuning parameters of one recovery run of ``epochs``."""
    return FinetuneParams(init="scratch", epochs=epochs, batch_size=recovery.batch_size,
                          label_smoothing=recovery.label_smoothing,
                          optimizer=recovery.optimizer, schedule=recovery.schedule,
                          checkpoint=None)


def recovery_distill_params(recovery: RecoveryParams, epochs: float) -> DistillParams:
    """The distillation parameters of one recovery run of ``epochs`` with a teacher (on
    ``train_labeled`` only, as the recovery without one)."""
    teacher = recovery.teacher
    if teacher is None:
        raise ValueError("recovery.teacher is not set")
    return DistillParams(temperature=teacher.temperature, alpha=teacher.alpha,
                         teacher_flip=teacher.flip, use_unlabeled=False, epochs=epochs,
                         batch_size=recovery.batch_size, optimizer=recovery.optimizer,
                         schedule=recovery.schedule)


def prune_and_recover(model: Classifier, images: np.ndarray, labels: np.ndarray,
                      splits: dict[str, np.ndarray], policy: SupervisedPolicy,
                      params: PruneParams, runtime: RuntimeParams, device: torch.device
                      ) -> tuple[Classifier, dict[str, float]]:
    """A pruned, recovered copy of ``model`` (left as it was) and the pruning report."""
    recovery = params.recovery

    def recover(pruned: Classifier, epochs: float) -> None:
        if not epochs:
            return
        if recovery.teacher is None:
            finetune(pruned, images, labels, splits, policy, recovery_params(recovery, epochs),
                     runtime, device, name="prune recovery")
        else:  # the unpruned model (left as it is) teaches
            distill(pruned, model, images, labels, splits, policy,
                    recovery_distill_params(recovery, epochs), runtime, device,
                    name="prune recovery")
        pruned.cpu()

    if params.method == "structured":
        settings = params.structured
        generator = torch.Generator().manual_seed(runtime.seed)
        labeled = splits["train_labeled"]

        def batch() -> tuple[torch.Tensor, torch.Tensor]:  # for Taylor importance
            idx = labeled[torch.randint(len(labeled), (TAYLOR_BATCH,),
                                        generator=generator).numpy()]
            return torch.from_numpy(images[idx]).float() / 255, torch.from_numpy(labels[idx])

        example = torch.from_numpy(images[:2]).float() / 255
        pruned, report = prune_structured(
            model, example, target=settings.target, metric=settings.metric,
            importance=settings.importance, steps=settings.steps, round_to=settings.round_to,
            keep_stem=settings.keep_stem, layer_ratios=settings.layer_ratios, batch=batch,
            recover=lambda m, _milestone: recover(m, recovery.epochs_per_step))
    else:
        # the masks stay on through recovery, which would otherwise train the zeros back
        pruned, report = prune_unstructured(model, amount=params.unstructured.amount,
                                            permanent=False)
        log.info("unstructured pruning: %.1f%% of weights are zero (no speed-up: dense "
                 "kernels still multiply them)", 100 * report["sparsity"])
    recover(pruned, recovery.final_epochs)
    if params.method != "structured":
        report["sparsity"] = sparsity(make_permanent(pruned))
    return pruned.eval(), report
