"""Training throughput of the project's loop against a plain hand-written PyTorch loop.

Same model (small_cnn), same 32×32 RGB uint8 images held in memory, same batched
augmentation (padded crop + flip), same batch size, optimiser and loss. The plain
loop is the minimum: shuffle, slice, augment, forward, backward, step. The project's
``fit`` adds the schedule, metric bookkeeping, the progress line and the BatchStream.
The two alternate, each timed over whole epochs; medians of the repeats.

    python -m benchmarks.loop_overhead [--images 8192] [--repeats 3]
"""

from __future__ import annotations

import argparse
import statistics
import time

import numpy as np
import torch
import torch.nn.functional as F

from benchmarks.common import write_result
from model_lifecycle.augment.augmenter import BatchAugmenter
from model_lifecycle.augment.config import ViewPolicy
from model_lifecycle.models import build_model
from model_lifecycle.training.config import OptimizerParams, ScheduleParams
from model_lifecycle.training.data import BatchStream
from model_lifecycle.training.loop import fit

BATCH, EPOCHS = 128, 2
POLICY = ViewPolicy.model_validate({"random_crop": {"padding": 4}, "horizontal_flip": {}})


def plain_loop(images: np.ndarray, labels: np.ndarray) -> float:
    torch.manual_seed(0)
    model = build_model("small_cnn", 10, 3).to(memory_format=torch.channels_last)
    opt = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9, nesterov=True,
                          weight_decay=5e-4)
    augment = BatchAugmenter(POLICY)
    data, targets = torch.from_numpy(images), torch.from_numpy(labels)
    generator = torch.Generator().manual_seed(0)
    model.train()
    start, seen = time.perf_counter(), 0
    for _ in range(EPOCHS):
        order = torch.randperm(len(data), generator=generator)
        for first in range(0, len(data) - BATCH + 1, BATCH):
            idx = order[first:first + BATCH]
            x = augment(data[idx], generator).contiguous(memory_format=torch.channels_last)
            loss = F.cross_entropy(model(x), targets[idx])
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            seen += len(idx)
    return seen / (time.perf_counter() - start)


def project_loop(images: np.ndarray, labels: np.ndarray) -> float:
    torch.manual_seed(0)
    model = build_model("small_cnn", 10, 3).to(memory_format=torch.channels_last)
    stream = BatchStream(images, labels, np.arange(len(labels)), batch_size=BATCH,
                         augment=BatchAugmenter(POLICY), channels_last=True)

    def loss_fn(module, views, targets):
        logits = module(views[0])
        return F.cross_entropy(logits, targets), {}

    result = fit(model, loss_fn, stream, epochs=EPOCHS,
                 optimizer=OptimizerParams(lr=0.05, weight_decay=5e-4),
                 schedule=ScheduleParams(kind="onecycle", warmup_epochs=0.5))
    return result.images_per_s


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=8192)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    torch.set_num_threads(2)
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, (args.images, 3, 32, 32), dtype=np.uint8)
    labels = rng.integers(0, 10, args.images)
    plain, ours = [], []
    for i in range(args.repeats):
        plain.append(plain_loop(images, labels))
        ours.append(project_loop(images, labels))
        print(f"repeat {i + 1}: plain {plain[-1]:.0f} img/s, project {ours[-1]:.0f} img/s",
              flush=True)
    overhead = 1 - statistics.median(ours) / statistics.median(plain)
    path = write_result("loop_overhead", {
        "command": "python -m benchmarks.loop_overhead",
        "images": args.images, "batch": BATCH, "epochs_per_timing": EPOCHS,
        "model": "small_cnn (width 32), channels_last",
        "plain_img_per_s": round(statistics.median(plain)),
        "project_img_per_s": round(statistics.median(ours)),
        "overhead_percent": round(100 * overhead, 1),
        "plain_runs": [round(r) for r in plain], "project_runs": [round(r) for r in ours],
        "goal": "overhead <= 5%",
    })
    print(f"overhead {100 * overhead:.1f}%  wrote {path}")


if __name__ == "__main__":
    main()
