"""Batches straight from the in-memory uint8 array: shuffled, sharded, augmented on the batch."""

from __future__ import annotations

from collections.abc import Callable, Iterator

import numpy as np
import torch

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
