"""The ``quantized`` variant: calibration sampling and quantization-aware training
around :func:`~model_lifecycle.compression.quantize.quantize` (which alone touches
``torch.ao.quantization``)."""

from __future__ import annotations

import logging

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from model_lifecycle.augment.augmenter import BatchAugmenter
from model_lifecycle.augment.config import SupervisedPolicy
from model_lifecycle.compression.config import QuantizeParams
from model_lifecycle.compression.quantize import quantize
from model_lifecycle.training.config import OptimizerParams, RuntimeParams, ScheduleParams
from model_lifecycle.training.data import BatchStream
from model_lifecycle.training.loop import fit

log = logging.getLogger(__name__)
QAT_BATCH = 64


def calibration_batches(images: np.ndarray, indices: np.ndarray, *, batches: int,
                        batch_size: int, seed: int) -> list[torch.Tensor]:
    """``batches`` float batches of ``batch_size`` images drawn (with replacement) from
    ``images[indices]`` with ``seed``: what static quantization observes.

    A batch is at most as large as ``indices``, with a warning: a larger one holds the
    same images many times over (100,000 of 65 images took 8 GiB and minutes, for no
    more information)."""
    available = len(indices)
    if batch_size > available:
        log.warning("compress.quantize.calibration_batch_size %d is more than the %d "
                    "train_labeled images calibration draws from: batches of %d are used",
                    batch_size, available, available)
        batch_size = available
    rng = np.random.default_rng(seed)
    return [torch.from_numpy(images[rng.choice(indices, batch_size)]).float() / 255
            for _ in range(batches)]


def quantize_variant(source: nn.Module, images: np.ndarray, labels: np.ndarray,
                     splits: dict[str, np.ndarray], policy: SupervisedPolicy,
                     params: QuantizeParams, runtime: RuntimeParams) -> nn.Module:
    """An INT8 copy of ``source`` (left as it is), calibrated on ``train_labeled``
    batches (static) or fine-tuned fake-quantized on them (qat), on the CPU where INT8
    runs."""
    calibration = calibration_batches(images, splits["train_labeled"],
                                      batches=params.calibration_batches,
                                      batch_size=params.calibration_batch_size,
                                      seed=runtime.seed)

    def train(fake_quantized: nn.Module) -> None:
        stream = BatchStream(images, labels, splits["train_labeled"], batch_size=QAT_BATCH,
                             augment=BatchAugmenter(policy), seed=runtime.seed)
        fit(fake_quantized, lambda m, views, y: (F.cross_entropy(m(views[0]), y), {}),
            stream, epochs=params.qat_epochs, optimizer=OptimizerParams(lr=params.qat_lr),
            schedule=ScheduleParams(kind="cosine", warmup_epochs=0), seed=runtime.seed,
            name="qat")

    return quantize(source, calibration[0], mode=params.mode, calibration=calibration,
                    train=train, backend=params.backend)
