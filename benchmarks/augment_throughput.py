"""Augmentation throughput: the project's batched tensor path against torchvision's
per-image PIL transforms in a DataLoader, same policy, same images, same 2 cores.

Images are the real CIFAR-10 training JPEGs (decoded once by the ingest code). For
each policy of ``conf/cifar10/parameters_augment.yml`` (and the supervised one with
TrivialAugmentWide added) both paths produce augmented float batches of 256 for
``--images`` images; each pass is repeated and the median images/s is reported.

    python -m benchmarks.augment_throughput [--images 10000] [--repeats 5]
"""

from __future__ import annotations

import argparse
import statistics
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from torch.utils.data import DataLoader, Dataset
from torchvision import transforms as T

from benchmarks.common import (
    DEFAULT_WORK,
    SHARED_CIFAR,
    cifar_jpeg_folder,
    conf_parameters,
    write_result,
)
from model_lifecycle.augment.augmenter import BatchAugmenter
from model_lifecycle.augment.config import AugmentParams, ViewPolicy
from model_lifecycle.data.image_folder import load_image_folder

PROJECT_ROOT = Path(__file__).resolve().parents[1]
BATCH = 256
CORES = 2


def pil_pipeline(policy: ViewPolicy, size: int) -> T.Compose:
    """torchvision's classic per-image transforms for the same policy."""
    steps: list = []
    if policy.random_crop:
        steps.append(T.RandomCrop(size, padding=policy.random_crop.padding))
    if policy.random_resized_crop:
        crop = policy.random_resized_crop
        steps.append(T.RandomResizedCrop(size, scale=crop.scale, ratio=crop.ratio))
    if policy.horizontal_flip:
        steps.append(T.RandomHorizontalFlip(policy.horizontal_flip.p))
    if policy.auto_augment:
        steps.append(T.TrivialAugmentWide() if policy.auto_augment.method ==
                     "trivial_augment_wide" else T.RandAugment(policy.auto_augment.num_ops,
                                                               policy.auto_augment.magnitude))
    if policy.color_jitter:
        j = policy.color_jitter
        steps.append(T.RandomApply([T.ColorJitter(j.brightness, j.contrast, j.saturation,
                                                  j.hue)], p=j.p))
    if policy.grayscale:
        steps.append(T.RandomGrayscale(policy.grayscale.p))
    if policy.gaussian_blur:
        b = policy.gaussian_blur
        kernel = max(3, int(0.1 * size) // 2 * 2 + 1)
        steps.append(T.RandomApply([T.GaussianBlur(kernel, b.sigma)], p=b.p))
    steps.append(T.ToTensor())
    if policy.random_erasing:
        e = policy.random_erasing
        steps.append(T.RandomErasing(e.p, e.scale, e.ratio, value="random"))
    return T.Compose(steps)


class PilImages(Dataset):
    """Like torchvision's CIFAR10 dataset: uint8 arrays in memory, a PIL image per item."""

    def __init__(self, images: np.ndarray, transform: T.Compose) -> None:
        self.images = images.transpose(0, 2, 3, 1)  # N×H×W×C for PIL
        self.transform = transform

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, index: int) -> torch.Tensor:
        return self.transform(Image.fromarray(self.images[index]))


def pil_rate(images: np.ndarray, policy: ViewPolicy, repeats: int) -> list[float]:
    loader = DataLoader(PilImages(images, pil_pipeline(policy, images.shape[-1])),
                        batch_size=BATCH, shuffle=True, num_workers=CORES,
                        persistent_workers=True, prefetch_factor=4)
    for _ in loader:  # warm-up: start the workers
        break
    rates = []
    for _ in range(repeats):
        start = time.perf_counter()
        seen = sum(len(batch) for batch in loader)
        rates.append(seen / (time.perf_counter() - start))
    return rates


def batched_rate(images: np.ndarray, policy: ViewPolicy, repeats: int) -> list[float]:
    data = torch.from_numpy(images)
    augment = BatchAugmenter(policy)
    generator = torch.Generator().manual_seed(0)
    augment(data[:BATCH], generator)  # warm-up
    rates = []
    for _ in range(repeats):
        start = time.perf_counter()
        order = torch.randperm(len(data), generator=generator)
        seen = 0
        for first in range(0, len(data), BATCH):
            seen += len(augment(data[order[first:first + BATCH]], generator))
        rates.append(seen / (time.perf_counter() - start))
    return rates


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--archive", type=Path, default=SHARED_CIFAR)
    parser.add_argument("--work", type=Path, default=DEFAULT_WORK)
    parser.add_argument("--images", type=int, default=10_000)
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    torch.set_num_threads(CORES)

    root = cifar_jpeg_folder(args.archive, args.work)
    images = load_image_folder(root, (32, 32), channels=3).images
    images = images[np.random.default_rng(0).permutation(len(images))[:args.images]]

    params = AugmentParams.model_validate(conf_parameters("cifar10")["augment"])
    trivial = params.supervised.model_copy(
        update={"auto_augment": AugmentParams.model_validate(
            {"supervised": {"auto_augment": {}}}).supervised.auto_augment})
    policies = {"supervised": params.supervised, "supervised+trivial_augment": trivial,
                "pretrain (SimCLR)": params.pretrain}
    rows = {}
    for name, policy in policies.items():
        pil = pil_rate(images, policy, args.repeats)
        ours = batched_rate(images, policy, args.repeats)
        rows[name] = {
            "pil_dataloader_img_per_s": round(statistics.median(pil)),
            "batched_img_per_s": round(statistics.median(ours)),
            "speedup": round(statistics.median(ours) / statistics.median(pil), 1),
            "pil_runs": [round(r) for r in pil], "batched_runs": [round(r) for r in ours],
        }
        print(f"{name:28s} PIL+DataLoader {rows[name]['pil_dataloader_img_per_s']:>7} img/s"
              f"  batched {rows[name]['batched_img_per_s']:>7} img/s"
              f"  ×{rows[name]['speedup']}", flush=True)
    path = write_result("augment_throughput", {
        "command": "python -m benchmarks.augment_throughput",
        "images": len(images), "image_shape": list(images.shape[1:]), "batch": BATCH,
        "cores": CORES, "pil_setup": f"torchvision.transforms on PIL images, DataLoader "
                                     f"num_workers={CORES}, batch {BATCH}",
        "batched_setup": f"BatchAugmenter in the main process, torch threads={CORES}",
        "policies": rows, "goal": ">= 3x faster",
    })
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
