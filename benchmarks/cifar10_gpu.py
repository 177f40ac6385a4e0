"""Real CIFAR-10 on one CUDA GPU: the CIFAR-10 recipe (``conf/cifar10``) through
``kedro run --env=cifar10`` with ``runtime.device: cuda``, in float32 and with
bfloat16 autocast side by side.

The recipe trains for a fixed ``--epochs`` instead of its CPU time budget (default
13.03: what 10 minutes buy on 2 CPU cores), so its accuracy compares with the CPU runs
and its time shows what the GPU buys. ``float32`` keeps PyTorch's defaults (cuDNN may
use TF32 for convolutions); ``bfloat16`` is ``runtime.mixed_precision: true``.

    python -m benchmarks.cifar10_gpu [--epochs 13.03] [--seed 0]
"""

from __future__ import annotations

import argparse
from pathlib import Path

import torch

from benchmarks.common import (
    DEFAULT_WORK,
    SHARED_CIFAR,
    cifar_jpeg_folder,
    kedro_run,
    scratch_project,
    write_result,
)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--archive", type=Path, default=SHARED_CIFAR)
    parser.add_argument("--work", type=Path, default=DEFAULT_WORK)
    parser.add_argument("--epochs", type=float, default=13.03)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    if not torch.cuda.is_available():
        raise SystemExit("No CUDA device is visible: this benchmark measures the GPU path; "
                         "the CPU figures come from python -m benchmarks.cifar10_budget.")
    project = scratch_project(args.work / "cifar10_gpu")
    env = "--env=cifar10"
    kedro_run(project, env, "--pipelines=ingest,augment",
              params={"ingest.path": cifar_jpeg_folder(args.archive, args.work)})
    results = {}
    for name, bf16 in (("float32", False), ("bfloat16", True)):
        run = kedro_run(project, env, "--pipelines=finetune", params={
            "runtime.device": "cuda", "runtime.seed": args.seed,
            "runtime.mixed_precision": bf16, "finetune.budget_seconds": None,
            "finetune.epochs": args.epochs})
        results[name] = {"test_accuracy": round(run["metrics.finetune.test_accuracy"], 4),
                         "train_seconds": round(run["metrics.finetune.train_seconds"], 1),
                         "images_per_s": round(run["metrics.finetune.images_per_s"])}
        print(name, results[name], flush=True)
    path = write_result("cifar10_gpu", {
        "command": "python -m benchmarks.cifar10_gpu", "gpu": torch.cuda.get_device_name(),
        "recipe": "conf/cifar10", "epochs": args.epochs, "seed": args.seed, **results})
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
