"""Real CIFAR-10 on one CUDA GPU: the budget benchmark's recipe in float32 and with
bfloat16 autocast side by side, and SimCLR pretraining scored by k-NN.

Same images, split and recipe as ``benchmarks.cifar10_budget`` (its ``OURS``), run
through the same training loop with ``runtime.device: cuda``; only the device and the
precision change. The recipe trains for a fixed ``--epochs`` (default 13.03: what the
10-minute budget fits on 2 CPU cores), so its accuracy compares with the CPU run's and
its time shows what the GPU buys. ``float32`` keeps PyTorch's defaults (cuDNN may use
TF32 for convolutions); ``bfloat16`` is ``runtime.mixed_precision: true``.
Augmentation stays on the CPU, as in every run of the loop.

    python -m benchmarks.cifar10_gpu [--epochs 13.03] [--pretrain-epochs 2] [--seed 0]
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np
import torch

from benchmarks.cifar10_budget import (
    OURS,
    cifar_split,
    simclr_knn,
    test_scores,
    train_recipe,
)
from benchmarks.common import DEFAULT_WORK, SHARED_CIFAR, cifar_jpeg_folder, write_result
from model_lifecycle.data.image_folder import load_image_folder
from model_lifecycle.models import build_model
from model_lifecycle.training.config import RuntimeParams

CUDA = torch.device("cuda")


def recipe(images, labels, splits, epochs: float, seed: int, bf16: bool) -> dict:
    runtime = RuntimeParams(device="cuda", seed=seed, mixed_precision=bf16)
    torch.cuda.synchronize()
    tic = time.perf_counter()
    model, result = train_recipe(images, labels, splits, epochs, runtime, CUDA)
    torch.cuda.synchronize()
    seconds = time.perf_counter() - tic
    return {**test_scores(model, images, labels, splits["test"]),
            "train_seconds": round(seconds, 1), "images_per_s": round(result.images_per_s)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--archive", type=Path, default=SHARED_CIFAR)
    parser.add_argument("--work", type=Path, default=DEFAULT_WORK)
    parser.add_argument("--epochs", type=float, default=13.03)
    parser.add_argument("--pretrain-epochs", type=int, default=2)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    if not torch.cuda.is_available():
        raise SystemExit("No CUDA device is visible: this benchmark measures the GPU path; "
                         "the CPU figures come from python -m benchmarks.cifar10_budget.")
    data = load_image_folder(cifar_jpeg_folder(args.archive, args.work), (32, 32), channels=3)
    pool, train, val, test = cifar_split(data.labels)
    splits = {"train_labeled": train, "train_unlabeled": train[:0], "val": val, "test": test}
    results = {}
    for name, bf16 in (("float32", False), ("bfloat16", True)):
        results[name] = recipe(data.images, data.labels, splits, args.epochs, args.seed, bf16)
        print(name, results[name], flush=True)
    torch.manual_seed(args.seed)
    encoder = build_model(OURS["arch"], 10, 3, **OURS["arch_kwargs"])
    knn = simclr_knn(encoder, data.images, data.labels, np.sort(pool), test,
                     args.pretrain_epochs, RuntimeParams(device="cuda", seed=args.seed), CUDA)
    results["pretrained_encoder"] = {**knn, "seconds": round(knn["seconds"], 1)}
    print("pretrained", results["pretrained_encoder"], flush=True)
    path = write_result("cifar10_gpu", {
        "command": "python -m benchmarks.cifar10_gpu", "gpu": torch.cuda.get_device_name(),
        "epochs": args.epochs, "seed": args.seed, "train_images": len(train),
        "test_images": len(test), "recipe": OURS, **results})
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
