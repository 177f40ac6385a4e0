"""Images per second of ``models.predict.predict`` (what evaluation, the corruption
report, explanations and the probes call) for each CIFAR-10 variant at several batch
sizes, side by side: the batch sizes alternate over ``--rounds`` rounds and each figure
is the median over rounds. The row ``default`` is the batch size ``predict`` chooses
itself on this device.

The models are the ones ``benchmarks.compression --env cifar10`` left in the CIFAR-10
scratch project (run ``benchmarks.cifar10_budget`` and that first).

    python -m benchmarks.predict_batch [--images 2048] [--rounds 5]
"""

from __future__ import annotations

import argparse
import statistics
import time
from pathlib import Path

import numpy as np
import torch

from benchmarks.common import DEFAULT_WORK, latest_version, load_latest, write_result
from model_lifecycle.io import ImageSetDataset
from model_lifecycle.models.predict import CPU_BATCH, predict
from model_lifecycle.variants import variants

BATCHES = (32, 64, 128, 256, 512)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--work", type=Path, default=DEFAULT_WORK)
    parser.add_argument("--images", type=int, default=2048)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    project = args.work / "cifar10" / "project"
    if not list(project.glob("data/06_models/pruned_model.pt/*")):
        raise SystemExit(f"{project} holds no compressed models: run python -m "
                         "benchmarks.cifar10_budget and benchmarks.compression --env cifar10")
    images = ImageSetDataset(filepath=str(latest_version(
        project, "data/03_primary/images.npz"))).load()
    pixels = np.ascontiguousarray(images.images[:args.images])
    indices = np.arange(len(pixels))
    sizes: list[int | None] = [*BATCHES, None]
    per_second = {}
    for variant in variants():
        if variant.evaluated_when:  # optional variants the compression run does not make
            continue
        name, model = variant.name, load_latest(project, variant.dataset, "cifar10")
        predict(model, pixels, indices[:256])  # warm-up: first-call allocations
        seconds: dict[int | None, list[float]] = {size: [] for size in sizes}
        for _ in range(args.rounds):
            for size in sizes:
                tic = time.perf_counter()
                predict(model, pixels, indices, batch_size=size)
                seconds[size].append(time.perf_counter() - tic)
        per_second[name] = {("default" if size is None else str(size)):
                            round(len(indices) / statistics.median(times))
                            for size, times in seconds.items()}
        print(name, per_second[name], flush=True)
    default_gain = {name: round(rates["default"] / rates["512"], 2)
                    for name, rates in per_second.items()}
    result = {
        "command": f"python -m benchmarks.predict_batch --images {args.images} "
                   f"--rounds {args.rounds}",
        "what": f"images per second of predict() on {len(indices):,} CIFAR-10 images, "
                f"{args.threads} threads, median of {args.rounds} alternating rounds",
        "default_batch_on_cpu": CPU_BATCH,
        "images_per_second": per_second,
        "default_over_512": default_gain,
    }
    print(f"wrote {write_result('predict_batch', result)}")


if __name__ == "__main__":
    main()
