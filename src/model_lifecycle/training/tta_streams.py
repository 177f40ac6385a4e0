"""Test-time adaptation run over shifted test streams: the corrupted test split (one
stream per corruption × severity) or a folder of one's own images, every method on
the same images in the same order, and the report.

A stream is a seeded sample of the images in a seeded random order, so that its
batches are i.i.d. (a test split or a folder sorted by class would give one-class
batches, whose statistics are no estimate of the shifted distribution's). Every method
predicts each batch once, online, as it adapts: the error of a stream is that of those
predictions.
"""

from __future__ import annotations

import copy
import logging
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from matplotlib import pyplot as plt
from torch import nn

from model_lifecycle.data.convert import MAX_PIXELS
from model_lifecycle.data.image_folder import load_image_folder
from model_lifecycle.errors import LifecycleError
from model_lifecycle.training.tta import (
    BatchNormAdaptation,
    NoAdaptation,
    Tent,
    batch_norms,
)
from model_lifecycle.training.tta_config import AdaptParams
from model_lifecycle.trust.corruptions import corrupt
from model_lifecycle.trust.robustness import seeded_sample

log = logging.getLogger(__name__)
COLUMNS = ("method", "corruption", "severity", "batch_size", "images", "error_before",
           "error_after", "seconds")


@dataclass(frozen=True)
class Stream:
    """Shifted images in the order they arrive: uint8 N×C×H×W and their labels."""

    corruption: str  # a corruption name, or "folder"
    severity: int  # 1 … 5; 0 for a folder
    images: torch.Tensor
    labels: np.ndarray


def stream_order(indices: np.ndarray, size: int | None, seed: int) -> np.ndarray:
    """A seeded sample of ``size`` of ``indices`` (all for None) in a seeded random
    order."""
    sample = seeded_sample(np.asarray(indices), size, seed)
    return np.random.default_rng([seed, 1]).permutation(sample)


def corruption_streams(images: np.ndarray, labels: np.ndarray, test: np.ndarray,
                       params: AdaptParams) -> Iterator[Stream]:
    """One stream per severity and corruption (severity outer, as the TENT reference),
    generated when it is reached: the same sampled test images, corrupted."""
    order = stream_order(test, params.sample, params.seed)
    clean = torch.from_numpy(np.ascontiguousarray(images[order]))
    for severity in params.severities:
        for name in params.corruption_names():
            yield Stream(name, severity, corrupt(clean, name, severity, seed=params.seed),
                         labels[order])


def folder_stream(path: str | Path, class_names: tuple[str, ...],
                  image_shape: tuple[int, int, int], params: AdaptParams, *,
                  resize: str = "center_crop", on_bad_image: str = "error",
                  max_pixels: int = MAX_PIXELS, num_workers: int | None = None) -> Stream:
    """The images under ``path`` (``<class>/<image>``, read like ingest reads a folder,
    to the model's ``image_shape`` C×H×W), labelled with the model's ``class_names``."""
    channels, height, width = image_shape
    found = load_image_folder(path, (height, width), channels=channels, resize=resize,
                              on_bad_image=on_bad_image, num_workers=num_workers,
                              max_pixels=max_pixels, min_classes=1)
    index = {name: i for i, name in enumerate(class_names)}
    unknown = [name for name in found.class_names if name not in index]
    if unknown:
        raise LifecycleError(
            f"Class folder '{unknown[0]}' under {path} (adapt.path) is not one of the "
            f"model's classes ({', '.join(class_names)}): rename or remove it.")
    labels = np.array([index[name] for name in found.class_names])[found.labels]
    if len(found.class_names) == 1:
        log.warning("adapt.path %s holds one class (%s): every batch is that class alone, "
                    "whose statistics batch-norm re-estimation and TENT normalise away; "
                    "their error on it says little about a stream of mixed classes. "
                    "Add images of other classes.", path, found.class_names[0])
    order = stream_order(np.arange(len(found)), params.sample, params.seed)
    return Stream("folder", 0, torch.from_numpy(np.ascontiguousarray(found.images[order])),
                  labels[order])


def stream_batches(count: int, batch_size: int) -> list[slice]:
    """Consecutive batches of ``batch_size``; the last one takes the remainder (between
    ``batch_size`` and twice that), so no batch's statistics come from a few images."""
    starts = range(0, max(count - batch_size, 0) + 1, batch_size)
    ends = [*starts[1:], count]
    return [slice(a, b) for a, b in zip(starts, ends, strict=True)]


def run_stream(adapter: NoAdaptation | BatchNormAdaptation | Tent, stream: Stream,
               batch_size: int, device: torch.device) -> tuple[float, float]:
    """(error of the adapter's online predictions, seconds) over ``stream``."""
    wrong = 0
    tic = time.perf_counter()
    for batch in stream_batches(len(stream.labels), batch_size):
        x = stream.images[batch].to(device).float().div_(255)
        predicted = adapter(x).argmax(1).cpu().numpy()
        wrong += int((predicted != stream.labels[batch]).sum())
    return wrong / max(len(stream.labels), 1), time.perf_counter() - tic


def adaptation_sweep(model: nn.Module, streams: Iterable[Stream], params: AdaptParams,
                     device: torch.device | None = None
                     ) -> tuple[pd.DataFrame, nn.Module]:
    """Every method of ``params.methods`` on every stream; ``model`` is not changed.

    Returns the report (one row per method and stream; ``error_before`` is the model
    as it is) and the adapted model of ``params.adapted_by()`` after the last stream,
    on the CPU, in eval mode. A TENT model's batch-norm running statistics are then
    re-estimated on that stream, so that it normalises in eval mode (one image at a
    time) the way it did on the stream's batches.
    """
    device = device or torch.device("cpu")
    source = copy.deepcopy(model).to(device).eval()
    adapters = {"none": NoAdaptation(source)}
    if "bn" in params.methods:
        adapters["bn"] = BatchNormAdaptation(source)
    if "tent" in params.methods:
        adapters["tent"] = Tent(source, lr=params.lr, steps=params.steps,
                                optimizer=params.optimizer, layers=params.layers)
    rows, last = [], None
    for stream in streams:
        before, unadapted_seconds = run_stream(adapters["none"], stream, params.batch_size,
                                               device)
        for method in params.methods:
            adapter = adapters[method]
            if method == "none":
                after, seconds = before, unadapted_seconds
            else:
                if params.episodic:
                    adapter.reset()
                after, seconds = run_stream(adapter, stream, params.batch_size, device)
            rows.append(dict(zip(COLUMNS, (method, stream.corruption, stream.severity,
                                           params.batch_size, len(stream.labels), before,
                                           after, seconds), strict=True)))
        log.info("%s %d: error %s", stream.corruption, stream.severity,
                 ", ".join(f"{r['method']} {r['error_after']:.3f}" for r in rows[-len(
                     params.methods):]))
        last = stream
    if last is None:
        raise LifecycleError("adapt has no test stream: name a corruption and a severity "
                             "(adapt.corruptions, adapt.severities) or set adapt.path.")
    adapted = _adapted_model(adapters[params.adapted_by()], last, params.batch_size, device)
    return pd.DataFrame(rows, columns=list(COLUMNS)), adapted


def _adapted_model(adapter: BatchNormAdaptation | Tent, stream: Stream, batch_size: int,
                   device: torch.device) -> nn.Module:
    if isinstance(adapter, BatchNormAdaptation):
        model = copy.deepcopy(adapter.model)
    else:
        model = adapter.adapted_model()
        if batch_norms(model):
            statistics = BatchNormAdaptation(model)
            run_stream(statistics, stream, batch_size, device)
            model = statistics.model
    return model.cpu().eval()


def mean_errors(report: pd.DataFrame) -> dict[str, float]:
    """``{"none_error": …, "bn_error": …, "tent_error": …}``: each method's error, mean
    over the streams (``none`` from ``error_before`` whether or not it is a row)."""
    means = {"none_error": float(report.groupby(["corruption", "severity"])
                                 .error_before.first().mean())}
    for method, errors in report.groupby("method", sort=False).error_after:
        means[f"{method}_error"] = float(errors.mean())
    return means


def hurt_warning(means: dict[str, float], margin: float = 0.01) -> str | None:
    """A sentence for the methods whose mean error is above the unadapted model's by more
    than ``margin`` (the means of :func:`mean_errors`), or None."""
    before = means["none_error"]
    worse = {key.removesuffix("_error"): error for key, error in means.items()
             if key != "none_error" and error > before + margin}
    if not worse:
        return None
    listed = ", ".join(f"{method} {error:.3f}" for method, error in worse.items())
    return (f"test-time adaptation raised the mean error from {before:.3f} unadapted to "
            f"{listed}: batch statistics and entropy minimisation assume batches like the "
            "test set, with its classes mixed; a stream of few classes or images, or a "
            "small adapt.batch_size, misleads them. The adapted model is saved all the "
            "same: serve the unadapted variant for these images")


def adaptation_figure(report: pd.DataFrame) -> plt.Figure:
    """Error per stream (corruption, and severity when there are several), one bar per
    method; the model as it is (``none``) always shown."""
    report = report.copy()
    several = report.severity.nunique() > 1
    report["stream"] = report.corruption + (" " + report.severity.astype(str) if several
                                            else "")
    streams = list(dict.fromkeys(report.stream))
    bars = {"none": report.groupby("stream", sort=False).error_before.first()}
    for method, rows in report[report.method != "none"].groupby("method", sort=False):
        bars[method] = rows.set_index("stream").error_after
    fig, ax = plt.subplots(figsize=(max(6.0, 0.7 * len(streams) + 2), 4.5),
                           layout="constrained")
    width = 0.8 / len(bars)
    x = np.arange(len(streams))
    for i, (method, errors) in enumerate(bars.items()):
        values = errors.reindex(streams).to_numpy()
        ax.bar(x + (i - (len(bars) - 1) / 2) * width, values, width,
               label=f"{method} (mean {np.nanmean(values):.1%})")
    ax.set_xticks(x, streams, rotation=45, ha="right", fontsize=8)
    ax.set(ylabel="error", ylim=(0, 1), title="Test-time adaptation: error per shifted "
                                              "stream")
    ax.legend(fontsize=8)
    return fig
