"""Batches straight from the in-memory uint8 array: shuffled, sharded, augmented on the batch."""

from __future__ import annotations

from collections.abc import Callable, Iterator

import numpy as np
import torch

from model_lifecycle.errors import LifecycleError

Augment = Callable[[torch.Tensor, torch.Generator], torch.Tensor]


class BatchStream:
    """Epochs of batches from ``images[indices]``.

    Each epoch's order and augmentations come from a generator seeded by
    ``(seed, epoch)``, so an epoch is the same whether or not the run was resumed.
    Under DDP each rank takes every ``world_size``-th batch of the same order.

    Yields ``(views, labels)``: ``views`` is a list of ``n_views`` float batches
    (B×C×H×W in [0, 1], on ``device``), ``labels`` an int64 batch.
    """

    def __init__(self, images: np.ndarray, labels: np.ndarray, indices: np.ndarray, *,
                 batch_size: int, augment: Augment | None, n_views: int = 1, seed: int = 0,
                 device: torch.device | None = None, channels_last: bool = False,
                 drop_last: bool = True, rank: int = 0, world_size: int = 1) -> None:
        self.images = torch.from_numpy(images)
        self.labels = torch.from_numpy(labels)
        self.indices = torch.from_numpy(np.asarray(indices, dtype=np.int64))
        self.batch_size = min(batch_size, len(self.indices))
        self.augment = augment
        self.n_views = n_views
        self.seed = seed
        self.device = device or torch.device("cpu")
        self.memory_format = torch.channels_last if channels_last else torch.contiguous_format
        self.drop_last = drop_last
        self.rank, self.world_size = rank, world_size

    def __len__(self) -> int:
        full, rest = divmod(len(self.indices), self.batch_size)
        batches = full if self.drop_last or not rest else full + 1
        return len(range(self.rank, batches, self.world_size))

    @property
    def images_per_epoch(self) -> int:
        return len(self) * self.batch_size

    def epoch(self, epoch: int) -> Iterator[tuple[list[torch.Tensor], torch.Tensor]]:
        generator = torch.Generator().manual_seed(self.seed * 100_003 + epoch)
        order = self.indices[torch.randperm(len(self.indices), generator=generator)]
        starts = range(0, len(order), self.batch_size)
        for number, start in enumerate(starts):
            chunk = order[start:start + self.batch_size]
            if self.drop_last and len(chunk) < self.batch_size:
                break
            if number % self.world_size != self.rank:
                continue
            raw = self.images[chunk]
            views = [self._to_device(self.augment(raw, generator) if self.augment
                                     else raw.float().div_(255)) for _ in range(self.n_views)]
            yield views, self.labels[chunk].to(self.device, non_blocking=True)

    def _to_device(self, batch: torch.Tensor) -> torch.Tensor:
        return batch.to(self.device, non_blocking=True).contiguous(
            memory_format=self.memory_format)


@torch.no_grad()
def predict(model: torch.nn.Module, images: np.ndarray, indices: np.ndarray, *,
            batch_size: int = 512, device: torch.device | None = None,
            flip_tta: bool = False, shift_tta: int = 0) -> torch.Tensor:
    """Model outputs for ``images[indices]`` (eval mode, no augmentation), on the CPU.

    ``flip_tta`` averages the outputs of each image and its mirror image. ``shift_tta``
    (pixels) also averages in copies shifted diagonally by ± that many pixels
    (reflect-padded), half the weight on the unshifted outputs and half on the shifted
    ones, as airbench's test-time augmentation does.
    """
    if device is None:  # a quantized model has no parameters: it runs on the CPU
        first = next(iter(model.parameters()), None)
        device = first.device if first is not None else torch.device("cpu")
    was_training = model.training
    model.eval()
    outputs = []
    data = torch.from_numpy(images)
    for start in range(0, len(indices), batch_size):
        batch = data[torch.from_numpy(np.asarray(indices[start:start + batch_size]))]
        x = batch.to(device).float().div_(255)
        views = [x, x.flip(-1)] if flip_tta else [x]
        out = torch.stack([model(v) for v in views]).mean(0)
        if shift_tta:
            shifted = [_shift(v, d) for v in views for d in (-shift_tta, shift_tta)]
            out = (out + torch.stack([model(v) for v in shifted]).mean(0)) / 2
        outputs.append(out.float().cpu())
    model.train(was_training)
    if not outputs:
        return torch.empty(0)
    return torch.cat(outputs)


def _shift(x: torch.Tensor, pixels: int) -> torch.Tensor:
    """``x`` moved by ``pixels`` down and right (up and left if negative), the uncovered
    border filled by reflection."""
    p = abs(pixels)
    if p >= min(x.shape[-2:]):
        raise LifecycleError(f"finetune.shift_tta is {p} pixels but the images are "
                             f"{x.shape[-2]}×{x.shape[-1]}: set it below {min(x.shape[-2:])}.")
    padded = torch.nn.functional.pad(x, (p, p, p, p), mode="reflect")
    start = p - pixels
    return padded[..., start:start + x.shape[-2], start:start + x.shape[-1]]
