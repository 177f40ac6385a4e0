"""Does pretraining help? Test accuracy on the embedded digits with few and all labels.

For each seed the encoder is pretrained once (SimCLR, the project's default
parameters) on every training image (labels unused; the same pool for every labeled
fraction), then for each ``labeled_fraction`` two models are fine-tuned with the
default recipe on ``train_labeled`` and selected on ``val``: one from the pretrained
encoder, one from scratch. Reported: mean and per-seed test accuracy.

    python -m benchmarks.digits_pretraining [--seeds 0 1 2] [--fractions 1.0 0.1 0.05 0.02]
"""

from __future__ import annotations

import argparse
import copy
import statistics
import time

import torch
from torch import nn

from benchmarks.common import conf_parameters, write_result
from model_lifecycle.augment.config import AugmentParams
from model_lifecycle.data.config import IngestParams
from model_lifecycle.data.digits import load_digits
from model_lifecycle.data.splits import make_splits
from model_lifecycle.models.registry import build_model
from model_lifecycle.training.config import RuntimeParams
from model_lifecycle.training.finetune import FinetuneParams, finetune
from model_lifecycle.training.pretrain import PretrainParams, pretrain


def _params(name: str, model):
    """The project's default parameters (no checkpoint files for these runs)."""
    raw = dict(conf_parameters("base")[name])
    if "checkpoint" in raw:
        raw["checkpoint"] = None
    return model.model_validate(raw)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--fractions", type=float, nargs="+", default=[1.0, 0.1, 0.05, 0.02])
    args = parser.parse_args()
    torch.set_num_threads(2)
    ingest = _params("ingest", IngestParams)
    augment = _params("augment", AugmentParams)
    pre, fine = _params("pretrain", PretrainParams), _params("finetune", FinetuneParams)
    data = load_digits(ingest.size_hw)
    cpu = torch.device("cpu")
    scores: dict[str, dict[str, list[float]]] = {}
    quality: dict[str, list[float]] = {"knn_accuracy": [], "linear_probe_accuracy": []}
    started = time.perf_counter()
    for seed in args.seeds:
        runtime = RuntimeParams(seed=seed)
        base = make_splits(data, ingest.splits, labeled_fraction=1.0, seed=seed)
        torch.manual_seed(seed)
        encoder = build_model(pre.arch, 10, 1, **pre.arch_kwargs)
        _, q = pretrain(encoder, data.images, data.labels, base, augment.pretrain, pre,
                        runtime, cpu)
        for key, values in quality.items():
            values.append(q[key])
        for fraction in args.fractions:
            splits = make_splits(data, ingest.splits, labeled_fraction=fraction, seed=seed)
            for init in ("pretrained", "scratch"):
                torch.manual_seed(seed)
                if init == "pretrained":
                    model = copy.deepcopy(encoder)
                    model.head = nn.Linear(model.encoder.feature_dim, 10)
                else:
                    model = build_model(fine.arch, 10, 1, **fine.arch_kwargs)
                _, s = finetune(model, data.images, data.labels, splits, augment.supervised,
                                fine, runtime, cpu)
                scores.setdefault(f"{fraction}", {}).setdefault(init, []).append(
                    s["test_accuracy"])
                print(f"seed {seed} labeled {fraction:>4} {init:10s} "
                      f"test {s['test_accuracy']:.4f}", flush=True)
    rows = {fraction: {init: {"mean": round(statistics.mean(v), 4), "per_seed": v}
                       for init, v in by_init.items()}
            for fraction, by_init in scores.items()}
    for row in rows.values():
        row["gain_points"] = round(100 * (row["pretrained"]["mean"] - row["scratch"]["mean"]), 2)
    path = write_result("digits_pretraining", {
        "command": "python -m benchmarks.digits_pretraining",
        "seeds": args.seeds, "image_size": list(ingest.size_hw),
        "pretrain": {"method": pre.method, "arch": pre.arch, "epochs": pre.epochs},
        "finetune": {"epochs": fine.epochs, "strategy": fine.strategy},
        "representation": {k: round(statistics.mean(v), 4) for k, v in quality.items()},
        "test_accuracy": rows, "seconds": round(time.perf_counter() - started),
        "goal": ">= 98% at labeled_fraction 1.0; pretrained beats scratch by >= 3 points "
                "at 0.1 (mean of 3 seeds)",
    })
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
