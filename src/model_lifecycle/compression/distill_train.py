"""Train a student from a teacher's soft targets, on labeled and unlabeled images."""

from __future__ import annotations

import copy
import logging
import time

import numpy as np
import torch
from torch import nn

from model_lifecycle.augment.augmenter import BatchAugmenter
from model_lifecycle.augment.config import ViewPolicy
from model_lifecycle.compression.config import DistillParams
from model_lifecycle.compression.distill import distillation_loss
from model_lifecycle.models.classifier import Classifier
from model_lifecycle.models.predict import accuracy
from model_lifecycle.models.registry import build_model
from model_lifecycle.training.budget import plan_epochs, trial_settings, warmup_sample
from model_lifecycle.training.config import RuntimeParams
from model_lifecycle.training.data import BatchStream
from model_lifecycle.training.device import rank, world_size
from model_lifecycle.training.distributed import fans_out, launch
from model_lifecycle.training.finetune import whiten_stem
from model_lifecycle.training.loop import Deadline, FitResult, fit

log = logging.getLogger(__name__)


def build_student(teacher: Classifier, images: np.ndarray, splits: dict[str, np.ndarray],
                  params: DistillParams, runtime: RuntimeParams) -> Classifier:
    """A new ``params.student_arch`` for ``teacher``'s classes and channels: its first
    convolution whitened on ``train_labeled`` (``whiten_stem``), then the teacher's
    matching leading stages copied in (``init_from_teacher``)."""
    student = build_model(params.student_arch, teacher.num_classes, images.shape[1],
                          input_size=images.shape[2:], **params.student_kwargs)
    if params.whiten_stem:
        whiten_stem(student, images, splits["train_labeled"], seed=runtime.seed)
    if params.init_from_teacher:
        copied = copy_leading_stages(student, teacher)
        if copied:
            log.info("distill: the student starts from the teacher's first %d encoder "
                     "stages", copied)
        else:
            log.warning("distill: compress.distill.init_from_teacher is set, but the "
                        "student's first encoder stage has other shapes than the teacher's: "
                        "it starts from scratch (give it the teacher's first widths, e.g. "
                        "compress.distill.student_kwargs)")
    return student


def distill(student: Classifier, teacher: nn.Module, images: np.ndarray, labels: np.ndarray,
            splits: dict[str, np.ndarray], policy: ViewPolicy, params: DistillParams,
            runtime: RuntimeParams, device: torch.device, *, name: str = "distill"
            ) -> tuple[FitResult, dict[str, float]]:
    """Train ``student`` in place (``teacher`` is only read); keep its best epoch on val.
    ``name`` labels the progress lines (e.g. ``prune recovery``).

    Unlabeled images (``use_unlabeled``) carry label −1: only the soft term applies.
    With ``params.budget_seconds`` the epoch count is planned from a measured warm-up.
    Returns the fit result, the ``epochs`` trained for and the ``train_seconds`` used.
    """
    if fans_out(runtime):  # DDP: every rank runs this function (docs/distributed.md)
        return launch(runtime, distill, student, teacher, images, labels, splits, policy,
                      params, runtime, name=name)
    start, deadline = time.perf_counter(), None
    if params.budget_seconds is not None:
        one_epoch = trial_settings(params)
        train = _training_images(splits, params)

        def trial(n_images: int) -> FitResult:
            subset = {**splits, "train_labeled": warmup_sample(train, n_images, runtime.seed),
                      "train_unlabeled": train[:0]}
            return _train(copy.deepcopy(student), teacher, images, labels, subset, policy,
                          one_epoch, runtime, device, f"{name} warm-up")

        plan = plan_epochs(params.budget_seconds, len(train), trial,
                           key="compress.distill.budget_seconds")
        params, deadline = plan.apply(params, start)
    result = _train(student, teacher, images, labels, splits, policy, params, runtime,
                    device, name, deadline)
    return result, {"epochs": result.epochs_trained,
                    "train_seconds": time.perf_counter() - start}


def _training_images(splits: dict[str, np.ndarray], params: DistillParams) -> np.ndarray:
    if params.use_unlabeled:
        return np.concatenate([splits["train_labeled"], splits["train_unlabeled"]])
    return splits["train_labeled"]


def _train(student: Classifier, teacher: nn.Module, images: np.ndarray, labels: np.ndarray,
           splits: dict[str, np.ndarray], policy: ViewPolicy, params: DistillParams,
           runtime: RuntimeParams, device: torch.device, name: str,
           deadline: Deadline | None = None) -> FitResult:
    train = splits["train_labeled"]
    targets = labels.copy()
    if params.use_unlabeled and len(splits["train_unlabeled"]):
        train = np.concatenate([train, splits["train_unlabeled"]])
        targets[splits["train_unlabeled"]] = -1
    teacher = copy.deepcopy(teacher).to(device).eval()  # the caller's model stays as it is
    student.to(device)
    if runtime.channels_last:
        teacher.to(memory_format=torch.channels_last)
        student.to(memory_format=torch.channels_last)
    stream = BatchStream(images, targets, train, batch_size=params.batch_size,
                         augment=BatchAugmenter(policy), seed=runtime.seed, device=device,
                         channels_last=runtime.channels_last, rank=rank(),
                         world_size=world_size(), on_device=runtime.data_on_device)

    def loss_fn(module: nn.Module, views: list[torch.Tensor], y: torch.Tensor):
        with torch.no_grad():
            soft_targets = teacher(views[0]).float()  # bfloat16 under CPU autocast
            if params.teacher_flip:  # the mirror image's logits, averaged in
                soft_targets = (soft_targets + teacher(views[0].flip(3)).float()) / 2
        logits = module(views[0])
        loss = distillation_loss(logits, soft_targets, y, temperature=params.temperature,
                                 alpha=params.alpha)
        return loss, {}

    def evaluate(module: nn.Module, _epoch: int) -> dict[str, float]:
        return {"val_accuracy": accuracy(module, images, labels, splits["val"])}

    return fit(student, loss_fn, stream, epochs=params.epochs, optimizer=params.optimizer,
               schedule=params.schedule, evaluate=evaluate, monitor="val_accuracy",
               device=device, mixed_precision=runtime.mixed_precision,
               cpu_bfloat16=runtime.cpu_bfloat16,
               compile_model=runtime.compile, seed=runtime.seed, deadline=deadline, name=name)


def copy_leading_stages(student: Classifier, teacher: Classifier) -> int:
    """Copy the teacher's encoder stages into the student, from the input on, for as long
    as every parameter and buffer of a stage has the same shape in both; returns how many
    stages were copied.

    A student that keeps the teacher's front and narrows the rest starts with the
    teacher's low-level features instead of random ones, as DistilBERT (Sanh et al.
    2019) starts from its teacher's layers. Copied parameters keep the student's own
    ``requires_grad``.
    """
    copied = 0
    for mine, theirs in zip(student.encoder.stages, teacher.encoder.stages, strict=False):
        own, source = mine.state_dict(), theirs.state_dict()
        if own.keys() != source.keys() or any(own[k].shape != source[k].shape for k in own):
            break
        mine.load_state_dict(source)
        copied += 1
    return copied
