"""Nodes of the ``compress`` pipeline: parse parameters, call ``compression``, measure
the result like every variant. None of them changes its input model."""

from __future__ import annotations

import logging
from typing import Any

import numpy as np
from torch import nn

from model_lifecycle.augment.config import policy_from_artifact
from model_lifecycle.compression.config import CompressParams
from model_lifecycle.compression.distill_train import build_student, distill
from model_lifecycle.compression.int8 import calibration_batches, quantize_variant
from model_lifecycle.compression.onnx import (
    OnnxClassifier,
    agreement,
    export_onnx,
    quantize_onnx,
)
from model_lifecycle.compression.quantize import fold_batch_norms
from model_lifecycle.compression.recover import prune_and_recover
from model_lifecycle.data.imageset import ImageSet
from model_lifecycle.data.splits import checked_splits
from model_lifecycle.evaluation.config import EvaluateParams
from model_lifecycle.evaluation.describe import describe
from model_lifecycle.models.classifier import Classifier
from model_lifecycle.params import parse_params
from model_lifecycle.training.config import RuntimeParams
from model_lifecycle.training.setup import prepare_runtime

log = logging.getLogger(__name__)
Metrics = dict[str, list[dict[str, float]]]


def _metrics(values: dict[str, float]) -> Metrics:
    return {key: [{"step": 0, "value": float(v)}] for key, v in values.items()}


def describe_finetuned(finetuned_model: Classifier, images: ImageSet,
                       splits: dict[str, np.ndarray], evaluate: dict[str, Any]) -> Metrics:
    """The baseline's numbers, measured like every variant's (and with its batch norms
    folded, the fair float reference for INT8 latency)."""
    latency = parse_params(EvaluateParams, evaluate, "evaluate").latency
    data = checked_splits(images, splits)
    numbers = describe(finetuned_model, images.images, images.labels, data, latency)
    folded = fold_batch_norms(finetuned_model)
    numbers |= {f"folded_{k}": v for k, v in describe(
        folded, images.images, images.labels, data, latency,
        float_source=finetuned_model).items() if k.startswith(("latency", "size"))}
    return _metrics(numbers)


def prune_model(finetuned_model: Classifier, images: ImageSet, splits: dict[str, np.ndarray],
                policy: dict[str, Any], params: dict[str, Any], runtime: dict[str, Any],
                evaluate: dict[str, Any]) -> tuple[Classifier, Metrics]:
    """Structured (Torch-Pruning) or unstructured pruning with recovery fine-tuning."""
    config = parse_params(CompressParams, params, "compress")
    run = parse_params(RuntimeParams, runtime, "runtime")
    latency = parse_params(EvaluateParams, evaluate, "evaluate").latency
    device = prepare_runtime(run)
    data = checked_splits(images, splits)
    pruned, report = prune_and_recover(finetuned_model, images.images, images.labels, data,
                                       policy_from_artifact(policy, "supervised"),
                                       config.prune, run, device)
    numbers = describe(pruned, images.images, images.labels, data, latency)
    return pruned, _metrics(report | numbers)


def quantize_model(finetuned_model: Classifier, pruned_model: Classifier, images: ImageSet,
                   splits: dict[str, np.ndarray], policy: dict[str, Any],
                   params: dict[str, Any], runtime: dict[str, Any], evaluate: dict[str, Any]
                   ) -> tuple[nn.Module, Metrics]:
    """INT8 quantization: post-training static (per-channel, calibrated), dynamic, or
    quantization-aware fine-tuning (``qat``)."""
    config = parse_params(CompressParams, params, "compress").quantize
    run = parse_params(RuntimeParams, runtime, "runtime")
    latency = parse_params(EvaluateParams, evaluate, "evaluate").latency
    prepare_runtime(run)
    data = checked_splits(images, splits)
    source = finetuned_model if config.source == "finetuned" else pruned_model
    quantized = quantize_variant(source, images.images, images.labels, data,
                                 policy_from_artifact(policy, "supervised"), config, run)
    log.info("quantized (%s, backend %s) from the %s model", config.mode, config.backend,
             config.source)
    numbers = describe(quantized, images.images, images.labels, data, latency,
                       float_source=source)
    return quantized, _metrics(numbers)


def quantize_onnx_model(finetuned_model: Classifier, pruned_model: Classifier,
                        images: ImageSet, splits: dict[str, np.ndarray],
                        params: dict[str, Any], runtime: dict[str, Any],
                        evaluate: dict[str, Any]) -> tuple[OnnxClassifier, Metrics]:
    """INT8 for ONNX Runtime: ``compress.quantize.source`` exported to ONNX, then
    statically quantized (QDQ) on the same calibration batches as the PyTorch INT8
    model; measured like every variant, plus its top-1 agreement with its float source
    on the test split."""
    config = parse_params(CompressParams, params, "compress").quantize
    run = parse_params(RuntimeParams, runtime, "runtime")
    latency = parse_params(EvaluateParams, evaluate, "evaluate").latency
    prepare_runtime(run)
    data = checked_splits(images, splits)
    source = (finetuned_model if config.source == "finetuned" else pruned_model).cpu().eval()
    calibration = calibration_batches(images.images, data["train_labeled"],
                                      batches=config.calibration_batches,
                                      batch_size=config.calibration_batch_size,
                                      seed=run.seed)
    model = OnnxClassifier(quantize_onnx(export_onnx(source, calibration[0]), calibration),
                           spec=source.spec)
    log.info("onnx_int8 (QDQ, onnxruntime) from the %s model", config.source)
    numbers = describe(model, images.images, images.labels, data, latency,
                       float_source=source)
    numbers |= agreement(source, model, images.images, data["test"])
    return model, _metrics(numbers)


def distill_model(finetuned_model: Classifier, images: ImageSet, splits: dict[str, np.ndarray],
                  policy: dict[str, Any], params: dict[str, Any], runtime: dict[str, Any],
                  evaluate: dict[str, Any]) -> tuple[Classifier, Metrics]:
    """A smaller student trained from the fine-tuned teacher's soft targets."""
    config = parse_params(CompressParams, params, "compress").distill
    run = parse_params(RuntimeParams, runtime, "runtime")
    latency = parse_params(EvaluateParams, evaluate, "evaluate").latency
    device = prepare_runtime(run)
    data = checked_splits(images, splits)
    student = build_student(finetuned_model, images.images, data, config, run)
    sizes = [sum(p.numel() for p in m.parameters()) for m in (student, finetuned_model)]
    if sizes[0] >= sizes[1]:
        log.warning("the student (%s, %s parameters) is no smaller than its teacher (%s): "
                    "compress.distill.student_arch / student_kwargs make a larger model than "
                    "the one it compresses", config.student_arch, f"{sizes[0]:,}",
                    f"{sizes[1]:,}")
    _result, budget = distill(student, finetuned_model, images.images, images.labels, data,
                              policy_from_artifact(policy, "supervised"), config, run, device)
    student.cpu().eval()
    finetuned_model.cpu()
    numbers = describe(student, images.images, images.labels, data, latency)
    return student, _metrics(numbers | budget)
