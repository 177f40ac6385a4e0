"""Nodes of the ``evaluate`` pipeline."""

from __future__ import annotations

import logging
from typing import Any

import numpy as np
import pandas as pd
import torch
from matplotlib.figure import Figure
from torch import nn

from model_lifecycle.compression.config import CompressParams
from model_lifecycle.compression.onnx import (
    OnnxClassifier,
    agreement,
    export_onnx,
    onnx_latencies_ms,
)
from model_lifecycle.data.imageset import ImageSet
from model_lifecycle.data.splits import checked_splits
from model_lifecycle.errors import LifecycleError
from model_lifecycle.evaluation.config import EvaluateParams
from model_lifecycle.evaluation.cost import side_by_side_latencies_ms
from model_lifecycle.evaluation.metrics import guessing_accuracy
from model_lifecycle.evaluation.plots import (
    confusion_matrices_figure,
    reliability_figure,
    robustness_figure,
    tradeoff_figure,
)
from model_lifecycle.evaluation.report import evaluate_model, mark_pareto
from model_lifecycle.models.structure import model_id
from model_lifecycle.params import parse_params
from model_lifecycle.trust.explanations import report_columns
from model_lifecycle.trust.robustness import (
    adversarial_accuracy,
    corruption_accuracy,
    corruption_summary,
)
from model_lifecycle.variants import variants

log = logging.getLogger(__name__)
Metrics = dict[str, list[dict[str, float]]]


def evaluated_models(config: EvaluateParams, models: dict[str, nn.Module | None]
                     ) -> dict[str, nn.Module]:
    """The variants this run evaluates, in declaration order: every one it reads, but an
    optional variant (``evaluated_when``) only when its ``evaluate`` flag is set."""
    chosen = {}
    for variant in variants():
        model = models.get(variant.name)
        wanted = not variant.evaluated_when or getattr(config, variant.evaluated_when)
        if variant.evaluated_when and wanted and variant.name not in models:
            log.warning("evaluate.%s is set but this run does not read %s: run `kedro run "
                        "--pipelines=evaluate` to include it.", variant.evaluated_when,
                        variant.dataset)
        if model is not None and wanted:
            chosen[variant.name] = model
    return chosen


def evaluate_variants(images: ImageSet, splits: dict[str, np.ndarray],
                      compress: dict[str, Any], params: dict[str, Any],
                      **models: nn.Module | None) -> tuple[pd.DataFrame, dict[str, Any]]:
    """Quality, calibration and cost of each evaluated variant (``models`` by variant
    name) on the same test images: one row each, and the details behind each row
    (per-class report, confusion matrix, reliability bins)."""
    config = parse_params(EvaluateParams, params, "evaluate")
    compress_config = parse_params(CompressParams, compress, "compress")
    test = checked_splits(images, splits)["test"]
    rows, details = [], {}
    chosen = evaluated_models(config, models)
    # timed in turn (evaluate.latency.rounds), so that a slow spell of the CPU does not
    # fall on one variant only and bend the speed-ups
    example = torch.from_numpy(images.images[:1]).float() / 255
    latency = side_by_side_latencies_ms(chosen, example, config.latency)
    for name, model in chosen.items():
        row, details[name] = evaluate_model(model, images.images, images.labels, test,
                                            images.class_names, config, latency[name])
        method = next(v for v in variants() if v.name == name).method_text(compress_config)
        rows.append({"variant": name, "method": method, **row, "model_id": model_id(model)})
        log.info("%s: test accuracy %.2f%%, %.2f ms at batch 1", name,
                 100 * row["accuracy"], row["latency_b1_p50_ms"])
        guess = guessing_accuracy(images.labels[test], row["accuracy"])
        if guess is not None:
            log.warning("%s answers %.2f%% of the %d test images correctly, not clearly "
                        "better than always answering the most frequent class (%.2f%%): "
                        "check the labels and its stage's settings (learning rate, epochs) "
                        "before registering or serving it", name, 100 * row["accuracy"],
                        len(test), 100 * guess)
    return pd.DataFrame(rows), {"class_names": list(images.class_names), "variants": details}


def measure_corruption_robustness(images: ImageSet, splits: dict[str, np.ndarray],
                                  params: dict[str, Any], **models: nn.Module | None
                                  ) -> pd.DataFrame:
    """Accuracy of every evaluated variant under each generated corruption and severity
    (``evaluate.robustness``), on the same seeded test images."""
    config = parse_params(EvaluateParams, params, "evaluate")
    test = checked_splits(images, splits)["test"]
    return corruption_accuracy(evaluated_models(config, models), images.images,
                               images.labels, test, config.robustness)


def measure_adversarial_robustness(images: ImageSet, splits: dict[str, np.ndarray],
                                   compress: dict[str, Any], params: dict[str, Any],
                                   **models: nn.Module | None) -> pd.DataFrame:
    """FGSM and PGD accuracy of every evaluated variant (``evaluate.adversarial``); a
    variant without autograd (INT8) is attacked through its float source."""
    config = parse_params(EvaluateParams, params, "evaluate")
    compress_config = parse_params(CompressParams, compress, "compress")
    chosen = evaluated_models(config, models)
    sources = {v.name: v.attacked_through(compress_config) for v in variants()
               if v.name in chosen and v.attacked_through(compress_config)}
    for name, source in sources.items():
        if source not in chosen:
            raise LifecycleError(f"The {name} model has no gradients and is attacked through "
                                 f"the {source} model, which this run does not read: run "
                                 f"`kedro run --pipelines=compress,evaluate`.")
    test = checked_splits(images, splits)["test"]
    return adversarial_accuracy(chosen, sources, images.images, images.labels, test,
                                config.adversarial)


# Below this top-1 agreement of an ONNX file with its PyTorch source, evaluate says so.
LOW_AGREEMENT = 0.95


def measure_onnx(images: ImageSet, splits: dict[str, np.ndarray], compress: dict[str, Any],
                 params: dict[str, Any], **models: nn.Module | None) -> pd.DataFrame:
    """Each evaluated float variant exported to ONNX (what a device runs) and checked
    against its PyTorch source on the test split — top-1 agreement and the largest
    probability difference — with its ONNX Runtime latency and file size. A variant
    that already is an ONNX file is checked against its float source; a PyTorch INT8
    model has no ONNX export here (its ONNX counterpart is ``onnx_int8``)."""
    config = parse_params(EvaluateParams, params, "evaluate")
    compress_config = parse_params(CompressParams, compress, "compress")
    chosen = evaluated_models(config, models)
    test = checked_splits(images, splits)["test"]
    example = torch.from_numpy(images.images[:1]).float() / 255
    rows = []
    for variant in variants():
        model = chosen.get(variant.name)
        if model is None or (getattr(model, "quantization", None) and
                             not isinstance(model, OnnxClassifier)):
            continue
        if isinstance(model, OnnxClassifier):
            exported, source = model, chosen.get(variant.attacked_through(compress_config))
        else:
            exported, source = OnnxClassifier(export_onnx(model, example)), model
        row = {"variant": variant.name, "onnx_size_bytes": float(len(exported.onnx_bytes))}
        if source is not None:
            row |= {f"onnx_{k}": v for k, v in agreement(source, exported, images.images,
                                                         test).items()}
        timings = onnx_latencies_ms(exported, example, batch_sizes=config.latency.batch_sizes,
                                    threads=config.latency.threads,
                                    warmup=config.latency.warmup,
                                    repeats=config.latency.repeats)
        row |= {f"onnx_latency_b{batch}_p50_ms": t["median"] for batch, t in timings.items()}
        rows.append(row)
        log.info("%s on ONNX Runtime: top-1 agreement %.4f, %.2f ms at batch 1", variant.name,
                 row.get("onnx_top1_agreement", float("nan")), row["onnx_latency_b1_p50_ms"])
        if row.get("onnx_top1_agreement", 1.0) < LOW_AGREEMENT:
            log.warning(
                "%s on ONNX Runtime answers like its PyTorch source on only %.1f%% of the %d "
                "test images: %s", variant.name, 100 * row["onnx_top1_agreement"], len(test),
                "INT8 does not suit this model as calibrated (more calibration images, "
                "compress.quantize.calibration_batches, may help; its accuracy says how "
                "much was lost)" if getattr(exported, "quantization", None) else
                "the export changed its answers, which it should not")
    columns = ["variant", "onnx_top1_agreement", "onnx_max_probability_difference",
               *(f"onnx_latency_b{b}_p50_ms" for b in config.latency.batch_sizes),
               "onnx_size_bytes"]
    return pd.DataFrame(rows, columns=columns)


def assemble_report(quality: pd.DataFrame, corruption_report: pd.DataFrame,
                    adversarial: pd.DataFrame, onnx_report: pd.DataFrame,
                    explanation_summary: pd.DataFrame, params: dict[str, Any]
                    ) -> tuple[pd.DataFrame, Metrics]:
    """The evaluation report: one row per variant with its quality and cost, corruption
    and adversarial robustness, ONNX agreement and latency, faithfulness and attribution
    drift, Pareto flags; and every number of it as a metric (``<variant>.<column>``)."""
    config = parse_params(EvaluateParams, params, "evaluate")
    report = (quality.merge(corruption_summary(corruption_report), on="variant", how="left")
              .merge(adversarial, on="variant", how="left")
              .merge(onnx_report, on="variant", how="left"))
    explained = report_columns(explanation_summary)
    missing = sorted(set(report.variant) - set(explained.variant))
    if missing:
        log.warning("explanation_summary has no row for %s (explained before these were "
                    "evaluated): run `kedro run --pipelines=explain,evaluate`.",
                    ", ".join(missing))
    report = report.merge(explained, on="variant", how="left")
    # an explanation of another model than the one evaluated (made again since explain
    # ran: `--pipelines=compress,evaluate`): its numbers are not this model's
    other = (report["explained_model_id"].notna() & report["model_id"].notna()
             & (report["explained_model_id"] != report["model_id"]))
    if other.any():
        log.warning("explanation_summary explained other models than those evaluated for "
                    "%s (made again since): their faithfulness and drift columns are left "
                    "empty; run `kedro run --pipelines=explain,evaluate` to fill them.",
                    ", ".join(report.loc[other, "variant"]))
        report.loc[other, [c for c in explained.columns
                           if c not in ("variant", "explained_model_id")]] = np.nan
    report = report.drop(columns="explained_model_id")
    rows = report.to_dict(orient="records")
    mark_pareto(rows, latency_key=_latency_key(config))
    report = pd.DataFrame(rows)
    metrics = {f"{row['variant']}.{key}": [{"step": 0, "value": float(value)}]
               for row in rows for key, value in row.items()
               if isinstance(value, float) and not np.isnan(value)}
    return report, metrics


def plot_evaluation(evaluation_report: pd.DataFrame, evaluation_details: dict[str, Any],
                    corruption_report: pd.DataFrame, params: dict[str, Any]
                    ) -> tuple[Figure, Figure, Figure, Figure]:
    """Confusion matrices, accuracy against latency and size (Pareto front), reliability,
    and accuracy under corruption by severity and by corruption."""
    config = parse_params(EvaluateParams, params, "evaluate")
    details = evaluation_details["variants"]
    return (confusion_matrices_figure(details, evaluation_details["class_names"]),
            tradeoff_figure(evaluation_report, latency_key=_latency_key(config)),
            reliability_figure(details, evaluation_report),
            robustness_figure(corruption_report))


def _latency_key(config: EvaluateParams) -> str:
    return f"latency_b{max(config.latency.batch_sizes)}_p50_ms"
