"""CPU latency (median of repeated timed runs, fixed threads), file size and parameters."""

from __future__ import annotations

import copy
import io
import statistics
import time

import torch
from torch import nn

from model_lifecycle.evaluation.config import LatencyParams


def cpu_latency_ms(model: nn.Module, example: torch.Tensor, *, batch_size: int,
                   threads: int = 1, warmup: int = 5, repeats: int = 20,
                   channels_last: bool = True) -> dict[str, float]:
    """Median and 95th-percentile milliseconds per forward pass on a batch of
    ``batch_size`` images shaped like ``example``, with ``threads`` torch threads.

    Every model is timed in one declared memory format (a copy of it is converted;
    ``model`` is left as it is): weights and input channels-last by default, as the
    registered model runs them, so that no variant is timed in a different layout
    merely because of how it was made (training leaves weights channels-last, loading
    a file leaves them contiguous).
    """
    return _summary(_timed_runs(model, example, batch_size=batch_size, threads=threads,
                                warmup=warmup, repeats=repeats, channels_last=channels_last))


def _timed_runs(model: nn.Module, example: torch.Tensor, *, batch_size: int, threads: int,
                warmup: int, repeats: int, channels_last: bool) -> list[float]:
    layout = torch.channels_last if channels_last else torch.contiguous_format
    previous = torch.get_num_threads()
    torch.set_num_threads(threads)
    times = []
    try:
        # copied under the timed thread count: an ONNX model's copy opens its ONNX
        # Runtime session with torch's thread count of the moment
        model = copy.deepcopy(model).to(memory_format=layout)
        x = example[:1].expand(batch_size, *example.shape[1:]).contiguous(
            memory_format=layout)
        with torch.inference_mode():
            model.eval()
            for i in range(warmup + repeats):
                start = time.perf_counter()
                model(x)
                if i >= warmup:
                    times.append((time.perf_counter() - start) * 1000)
    finally:
        torch.set_num_threads(previous)
    return times


def _summary(times: list[float]) -> dict[str, float]:
    times = sorted(times)
    return {"median": statistics.median(times),
            "p95": times[min(len(times) - 1, round(0.95 * (len(times) - 1)))]}


def latencies_ms(model: nn.Module, example: torch.Tensor, params: LatencyParams
                 ) -> dict[int, dict[str, float]]:
    """:func:`cpu_latency_ms` at each of ``params.batch_sizes``, as ``params`` says."""
    return side_by_side_latencies_ms({"model": model}, example, params)["model"]


def side_by_side_latencies_ms(models: dict[str, nn.Module], example: torch.Tensor,
                              params: LatencyParams) -> dict[str, dict[int, dict[str, float]]]:
    """:func:`cpu_latency_ms` of every model at each of ``params.batch_sizes``, timed in
    turn ``params.rounds`` times over (each turn: ``warmup`` untimed and ``repeats``
    timed runs); median and p95 over all of a model's timed runs.

    A CPU's speed drifts over seconds (frequency, neighbours on a shared host): timed
    one after the other, a slow spell falls on one model and not on the next, and their
    ratio (the speed-up the report exists for) is off. Taking turns spreads it over all.
    """
    times: dict[str, dict[int, list[float]]] = {
        name: {batch: [] for batch in params.batch_sizes} for name in models}
    for _ in range(params.rounds):
        for name, model in models.items():
            for batch in params.batch_sizes:
                times[name][batch] += _timed_runs(
                    model, example, batch_size=batch, threads=params.threads,
                    warmup=params.warmup, repeats=params.repeats,
                    channels_last=params.channels_last)
    return {name: {batch: _summary(runs) for batch, runs in per_batch.items()}
            for name, per_batch in times.items()}


def file_size_bytes(model: nn.Module) -> int:
    """Bytes of the model's weights as ``torch.save`` writes them (of its file, for a
    model that is an ONNX file)."""
    if isinstance(getattr(model, "onnx_bytes", None), bytes):
        return len(model.onnx_bytes)
    buffer = io.BytesIO()
    torch.save(model.state_dict(), buffer)
    return buffer.getbuffer().nbytes


def parameter_count(model: nn.Module) -> int:
    """Parameters of a float model (quantization keeps the count of its float source)."""
    return sum(p.numel() for p in model.parameters())
