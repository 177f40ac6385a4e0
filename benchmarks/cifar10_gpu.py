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
import yaml

from benchmarks.cifar10_budget import OURS, cifar_split, recipe_params, recipe_policy
from benchmarks.common import DEFAULT_WORK, SHARED_CIFAR, cifar_jpeg_folder, write_result
from model_lifecycle.augment.config import AugmentParams
from model_lifecycle.data.image_folder import load_image_folder
from model_lifecycle.models import build_model
from model_lifecycle.ssl.probes import features, knn_accuracy
from model_lifecycle.training.config import (
    OptimizerParams,
    PretrainParams,
    RuntimeParams,
    ScheduleParams,
)
from model_lifecycle.training.data import predict
from model_lifecycle.training.finetune import accuracy, finetune
from model_lifecycle.training.pretrain import pretrain

CUDA = torch.device("cuda")


def recipe(images, labels, splits, epochs: float, seed: int, bf16: bool) -> dict:
    runtime = RuntimeParams(device="cuda", seed=seed, mixed_precision=bf16)
    torch.manual_seed(seed)
    model = build_model(OURS["arch"], 10, 3, **OURS["arch_kwargs"])
    torch.cuda.synchronize()
    tic = time.perf_counter()
    result, _ = finetune(model, images, labels, {**splits, "test": splits["test"][:0]},
                         recipe_policy(), recipe_params(epochs), runtime, CUDA)
    torch.cuda.synchronize()
    seconds = time.perf_counter() - tic
    test = splits["test"]
    plain = predict(model, images, test).argmax(1).numpy() == labels[test]
    return {"test_accuracy": round(accuracy(model, images, labels, test, flip_tta=True,
                                            shift_tta=OURS["shift_tta"]), 4),
            "test_accuracy_without_tta": round(float(plain.mean()), 4),
            "train_seconds": round(seconds, 1), "images_per_s": round(result.images_per_s)}


def simclr_knn(images, labels, train, test, epochs: int, seed: int) -> dict:
    conf = Path(__file__).resolve().parents[1] / "conf/cifar10/parameters_augment.yml"
    policy = AugmentParams.model_validate(yaml.safe_load(conf.read_text())["augment"]).pretrain
    params = PretrainParams(arch=OURS["arch"], epochs=epochs, batch_size=256, eval_every=1000,
                            optimizer=OptimizerParams(lr=0.3, weight_decay=1e-4),
                            schedule=ScheduleParams(kind="cosine", warmup_epochs=min(1, epochs)))
    torch.manual_seed(seed)
    model = build_model(OURS["arch"], 10, 3, **OURS["arch_kwargs"])
    tic = time.perf_counter()
    result, _ = pretrain(model, images, labels,
                         {"train_labeled": train, "train_unlabeled": train[:0], "val": test},
                         policy, params, RuntimeParams(device="cuda", seed=seed), CUDA)
    seconds = time.perf_counter() - tic
    bank, queries = features(model.encoder, images, train), features(model.encoder, images, test)
    return {"knn_accuracy": round(knn_accuracy(bank, labels[train], queries, labels[test]), 4),
            "epochs": epochs, "seconds": round(seconds, 1),
            "images_per_s": round(result.images_per_s), "method": "simclr"}


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
    results["pretrained_encoder"] = simclr_knn(data.images, data.labels, np.sort(pool), test,
                                               args.pretrain_epochs, args.seed)
    print("pretrained", results["pretrained_encoder"], flush=True)
    path = write_result("cifar10_gpu", {
        "command": "python -m benchmarks.cifar10_gpu", "gpu": torch.cuda.get_device_name(),
        "epochs": args.epochs, "seed": args.seed, "train_images": len(train),
        "test_images": len(test), "recipe": OURS, **results})
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
