"""Nodes of the ``compress`` pipeline. None of them changes its input model."""

from __future__ import annotations

import logging
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from model_lifecycle.augment.augmenter import BatchAugmenter
from model_lifecycle.augment.config import policy_from_artifact
from model_lifecycle.compression.config import CompressParams
from model_lifecycle.compression.distill_train import distill
from model_lifecycle.compression.prune import prune_structured, prune_unstructured
from model_lifecycle.compression.quantize import fold_batch_norms, quantize
from model_lifecycle.compression.report import describe
from model_lifecycle.data.imageset import ImageSet
from model_lifecycle.data.splits import checked_splits
from model_lifecycle.models.classifier import Classifier
from model_lifecycle.models.registry import build_model
from model_lifecycle.params import parse_params
from model_lifecycle.training.config import OptimizerParams, RuntimeParams, ScheduleParams
from model_lifecycle.training.data import BatchStream
from model_lifecycle.training.finetune import FinetuneParams, finetune
from model_lifecycle.training.loop import fit
from model_lifecycle.training.setup import prepare_runtime

log = logging.getLogger(__name__)
Metrics = dict[str, list[dict[str, float]]]


def _metrics(values: dict[str, float]) -> Metrics:
    return {key: [{"step": 0, "value": float(v)}] for key, v in values.items()}


def describe_finetuned(finetuned_model: Classifier, images: ImageSet,
                       splits: dict[str, np.ndarray], params: dict[str, Any]) -> Metrics:
    """The baseline's numbers, measured like every variant's."""
    config = parse_params(CompressParams, params, "compress")
    data = checked_splits(images, splits)
    numbers = describe(finetuned_model, images.images, images.labels, data, config.latency)
    folded = fold_batch_norms(finetuned_model)
    numbers |= {f"folded_{k}": v for k, v in describe(
        folded, images.images, images.labels, data, config.latency,
        float_source=finetuned_model).items() if k.startswith(("latency", "size"))}
    return _metrics(numbers)


def prune_model(finetuned_model: Classifier, images: ImageSet, splits: dict[str, np.ndarray],
                policy: dict[str, Any], params: dict[str, Any], runtime: dict[str, Any]
                ) -> tuple[Classifier, Metrics]:
    """Structured (Torch-Pruning) or unstructured pruning with recovery fine-tuning."""
    config = parse_params(CompressParams, params, "compress")
    run = parse_params(RuntimeParams, runtime, "runtime")
    device = prepare_runtime(run)
    data = checked_splits(images, splits)
    supervised = policy_from_artifact(policy, "supervised")
    prune = config.prune

    def recover(model: Classifier, epochs: int) -> None:
        if epochs:
            finetune(model, images.images, images.labels, data, supervised,
                     _recovery_params(epochs, prune.lr), run, device)
            model.cpu()

    example = torch.from_numpy(images.images[:2]).float() / 255
    if prune.method == "structured":
        generator = torch.Generator().manual_seed(run.seed)

        def batch() -> tuple[torch.Tensor, torch.Tensor]:
            idx = data["train_labeled"][torch.randint(len(data["train_labeled"]), (64,),
                                                      generator=generator).numpy()]
            return torch.from_numpy(images.images[idx]).float() / 255, \
                torch.from_numpy(images.labels[idx])

        pruned, report = prune_structured(
            finetuned_model, example, target=prune.target, metric=prune.metric,
            importance=prune.importance, steps=prune.steps, round_to=prune.round_to,
            keep_stem=prune.keep_stem,
            recover=lambda model, _k: recover(model, prune.recovery_epochs), batch=batch)
    else:
        pruned, report = prune_unstructured(finetuned_model, amount=prune.amount)
        log.info("unstructured pruning: %.1f%% of weights are zero (no speed-up: dense "
                 "kernels still multiply them)", 100 * report["sparsity"])
    recover(pruned, prune.final_epochs)
    numbers = describe(pruned.eval(), images.images, images.labels, data, config.latency)
    return pruned.eval(), _metrics(report | numbers)


def quantize_model(finetuned_model: Classifier, pruned_model: Classifier, images: ImageSet,
                   splits: dict[str, np.ndarray], policy: dict[str, Any],
                   params: dict[str, Any], runtime: dict[str, Any]
                   ) -> tuple[nn.Module, Metrics]:
    """INT8 quantization: post-training static (per-channel, calibrated), dynamic, or
    quantization-aware fine-tuning (``qat``)."""
    config = parse_params(CompressParams, params, "compress")
    run = parse_params(RuntimeParams, runtime, "runtime")
    data = checked_splits(images, splits)
    source = finetuned_model if config.quantize.source == "finetuned" else pruned_model
    rng = np.random.default_rng(0)
    calibration = [torch.from_numpy(images.images[rng.choice(data["train_labeled"], 64)])
                   .float() / 255 for _ in range(config.quantize.calibration_batches)]
    example = calibration[0]
    prepare_runtime(run)

    def train(fake_quantized: nn.Module) -> None:  # qat: on the CPU, where INT8 runs
        stream = BatchStream(images.images, images.labels, data["train_labeled"],
                             batch_size=64, augment=BatchAugmenter(
                                 policy_from_artifact(policy, "supervised")), seed=run.seed)
        fit(fake_quantized, lambda m, views, y: (F.cross_entropy(m(views[0]), y), {}),
            stream, epochs=config.quantize.qat_epochs,
            optimizer=OptimizerParams(lr=config.quantize.qat_lr),
            schedule=ScheduleParams(kind="cosine", warmup_epochs=0), seed=run.seed,
            name="qat")

    quantized = quantize(source, example, mode=config.quantize.mode, calibration=calibration,
                         train=train, backend=config.quantize.backend)
    log.info("quantized (%s, backend %s) from the %s model", config.quantize.mode,
             config.quantize.backend, config.quantize.source)
    numbers = describe(quantized, images.images, images.labels, data, config.latency,
                       float_source=source)
    return quantized, _metrics(numbers)


def distill_model(finetuned_model: Classifier, images: ImageSet, splits: dict[str, np.ndarray],
                  policy: dict[str, Any], params: dict[str, Any], runtime: dict[str, Any]
                  ) -> tuple[Classifier, Metrics]:
    """A smaller student trained from the fine-tuned teacher's soft targets."""
    config = parse_params(CompressParams, params, "compress")
    run = parse_params(RuntimeParams, runtime, "runtime")
    device = prepare_runtime(run)
    data = checked_splits(images, splits)
    student = build_model(config.distill.student_arch, len(images.class_names),
                          images.image_shape[0], **config.distill.student_kwargs)
    distill(student, finetuned_model, images.images, images.labels, data,
            policy_from_artifact(policy, "supervised"), config.distill, run, device)
    student.cpu().eval()
    finetuned_model.cpu()
    numbers = describe(student, images.images, images.labels, data, config.latency)
    return student, _metrics(numbers)


def _recovery_params(epochs: int, lr: float) -> FinetuneParams:
    return FinetuneParams(init="scratch", epochs=epochs, checkpoint=None,
                          optimizer=OptimizerParams(lr=lr),
                          schedule=ScheduleParams(kind="cosine", warmup_epochs=0))
