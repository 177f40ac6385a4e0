"""Seeds, threads and device for a training node, from ``params:runtime``."""

from __future__ import annotations

import random

import numpy as np
import torch

from model_lifecycle.training.config import RuntimeParams
from model_lifecycle.training.device import resolve_device, set_tf32


def prepare_runtime(runtime: RuntimeParams) -> torch.device:
    """Seed every RNG, fix the thread count, set TF32 on CUDA, and return the device to
    train on."""
    random.seed(runtime.seed)
    np.random.seed(runtime.seed)
    torch.manual_seed(runtime.seed)
    if runtime.num_threads:
        torch.set_num_threads(runtime.num_threads)
    device = resolve_device(runtime.device)
    if device.type == "cuda":
        set_tf32(runtime.tf32)
    return device


def history_for_mlflow(history: dict[str, list[list[float]]], **final: float
                       ) -> dict[str, list[dict[str, float]]]:
    """``{metric: [[epoch, value], …]}`` plus final values → kedro-mlflow's metric-history
    format (``{metric: [{"step": epoch, "value": value}, …]}``).

    Final values (those of the model that is kept) are logged one step after the last
    epoch, so a metric's latest value in MLflow is the final one. With ``best_epoch`` (the
    epoch whose weights were kept) among them, every other validation metric (``val_*``)
    of that epoch is logged there too: the runs table then shows the kept model's
    robust accuracy beside its accuracy, not the last epoch's."""
    after = 1 + max((int(e) for points in history.values() for e, _ in points), default=-1)
    out = {key: [{"step": int(e), "value": float(v)} for e, v in points]
           for key, points in history.items()}
    kept = final.get("best_epoch")
    for key, points in history.items():
        if kept is None or not key.startswith("val_") or key in final:
            continue
        at_kept = [v for e, v in points if int(e) == int(kept)]
        if at_kept:
            out[key].append({"step": after, "value": float(at_kept[-1])})
    for key, value in final.items():
        out.setdefault(key, []).append({"step": after, "value": float(value)})
    return out
