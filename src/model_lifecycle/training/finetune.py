"""Supervised fine-tuning on the labeled training images, selected on val."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from model_lifecycle.augment.augmenter import BatchAugmenter, LabelMixer
from model_lifecycle.augment.config import SupervisedPolicy
from model_lifecycle.models.classifier import Classifier
from model_lifecycle.models.init import dirac_convs, whiten_first_conv
from model_lifecycle.training.config import FinetuneParams, RuntimeParams
from model_lifecycle.training.data import BatchStream, predict
from model_lifecycle.training.device import rank, world_size
from model_lifecycle.training.loop import FitResult, epoch_count, fit

WHITENING_SAMPLE = 5000  # training images whose patches set the whitening filters


def whiten_stem(model: nn.Module, images: np.ndarray, indices: np.ndarray, *,
                seed: int) -> None:
    """Whiten ``model``'s first convolution (frozen) on up to ``WHITENING_SAMPLE`` images
    of ``images[indices]`` (uint8 N×C×H×W), drawn with ``seed``."""
    sample = np.random.default_rng(seed).permutation(indices)[:WHITENING_SAMPLE]
    whiten_first_conv(model, torch.from_numpy(images[np.sort(sample)]).float().div_(255))


def accuracy(model: nn.Module, images: np.ndarray, labels: np.ndarray, indices: np.ndarray,
             *, flip_tta: bool = False, shift_tta: int = 0) -> float:
    if len(indices) == 0:
        return float("nan")
    logits = predict(model, images, indices, flip_tta=flip_tta, shift_tta=shift_tta)
    return float((logits.argmax(1).numpy() == labels[indices]).mean())


def finetune(model: Classifier, images: np.ndarray, labels: np.ndarray,
             splits: dict[str, np.ndarray], policy: SupervisedPolicy, params: FinetuneParams,
             runtime: RuntimeParams, device: torch.device) -> tuple[FitResult, dict[str, float]]:
    """Train ``model`` in place on ``train_labeled``; keep its best epoch on ``val``.

    Returns the fit result and the final ``val_accuracy`` and ``test_accuracy``.
    """
    model.to(device)
    if params.dirac_convs:
        dirac_convs(model)
    if params.whiten_stem:
        whiten_stem(model, images, splits["train_labeled"], seed=runtime.seed)
    if runtime.channels_last:
        model.to(memory_format=torch.channels_last)
    mixer = LabelMixer(policy, model.num_classes)
    stream = BatchStream(images, labels, splits["train_labeled"], batch_size=params.batch_size,
                         augment=BatchAugmenter(policy), seed=runtime.seed, device=device,
                         channels_last=runtime.channels_last, rank=rank(),
                         world_size=world_size())

    def loss_fn(module: nn.Module, views: list[torch.Tensor], targets: torch.Tensor):
        x, soft = mixer(views[0], targets)
        logits = module(x)
        loss = F.cross_entropy(logits, soft.to(logits.dtype),
                               label_smoothing=params.label_smoothing)
        return loss, {"accuracy": (logits.argmax(1) == targets).float().mean().item()}

    passes, _steps = epoch_count(params.epochs, len(stream))

    def evaluate(module: nn.Module, epoch: int) -> dict[str, float]:
        if (epoch + 1) % params.eval_every and epoch + 1 != passes:
            return {}  # selection and early stopping only see the epochs checked
        return {"val_accuracy": accuracy(module, images, labels, splits["val"],
                                         flip_tta=params.flip_tta, shift_tta=params.shift_tta)}

    result = fit(model, loss_fn, stream, epochs=params.epochs, optimizer=params.optimizer,
                 schedule=params.schedule, evaluate=evaluate, monitor="val_accuracy",
                 patience=params.patience, clip_grad_norm=params.clip_grad_norm,
                 ema_decay=params.ema_decay,
                 device=device, mixed_precision=runtime.mixed_precision,
                 checkpoint=Path(params.checkpoint) if params.checkpoint else None,
                 resume=params.resume, config=params.model_dump(mode="json"),
                 seed=runtime.seed, name="finetune")
    return result, {
        "val_accuracy": accuracy(model, images, labels, splits["val"],
                                 flip_tta=params.flip_tta, shift_tta=params.shift_tta),
        "test_accuracy": accuracy(model, images, labels, splits["test"],
                                  flip_tta=params.flip_tta, shift_tta=params.shift_tta),
    }
