"""Batches straight from the uint8 array (in memory or memory-mapped): shuffled, sharded,
augmented on the batch."""

from __future__ import annotations

from collections.abc import Callable, Iterator

import numpy as np
import torch

from model_lifecycle.data.store import gather_rows

Augment = Callable[[torch.Tensor, torch.Generator], torch.Tensor]


class BatchStream:
    """Epochs of batches from ``images[indices]``.

    Each epoch's order and augmentations come from a generator seeded by
    ``(seed, epoch)``, so an epoch is the same whether or not the run was resumed.
    Under DDP (``world_size`` > 1) ``batch_size`` is the global batch: every rank draws
    the same order, keeps its shard ``order[rank::world_size]`` (the last
    ``len(indices) % world_size`` images of the order dropped, so that every shard has
    the same length) and takes ``batch_size / world_size`` images per step, so step k of
    all ranks together sees the images of one process's step k. Each rank augments with
    its own generator.

    Yields ``(views, labels)``: ``views`` is a list of ``n_views`` float batches
    (B×C×H×W in [0, 1], on ``device``), ``labels`` an int64 batch.

    ``on_device``: ``images[indices]`` and their labels are copied to ``device`` once, and
    every batch is gathered and augmented there (the augmentations' random draws still
    come from the CPU generator, so the batches are those of the default path).
    """

    def __init__(self, images: np.ndarray, labels: np.ndarray, indices: np.ndarray, *,
                 batch_size: int, augment: Augment | None, n_views: int = 1, seed: int = 0,
                 device: torch.device | None = None, channels_last: bool = False,
                 drop_last: bool = True, rank: int = 0, world_size: int = 1,
                 on_device: bool = False) -> None:
        self.images = images  # indexed per batch: a memory map is read batch by batch
        self.labels = torch.from_numpy(labels)
        self.indices = torch.from_numpy(np.asarray(indices, dtype=np.int64))
        if batch_size % world_size:
            raise ValueError(f"global batch {batch_size} is not divisible by the world "
                             f"size {world_size}")
        self.shard = len(self.indices) // world_size  # images per rank and epoch
        if not self.shard:
            raise ValueError(f"{len(self.indices)} training images cannot be shared by "
                             f"{world_size} ranks")
        self.batch_size = min(batch_size // world_size, self.shard)  # per rank
        self.augment = augment
        self.n_views = n_views
        self.seed = seed
        self.device = device or torch.device("cpu")
        self.memory_format = torch.channels_last if channels_last else torch.contiguous_format
        self.drop_last = drop_last
        self.rank, self.world_size = rank, world_size
        self.resident: tuple[torch.Tensor, torch.Tensor] | None = None
        if on_device:  # B×C×H×W uint8 rows in the order of ``indices``, and their labels
            rows = torch.from_numpy(gather_rows(images, self.indices.numpy()))
            self.resident = (rows.to(self.device), self.labels[self.indices].to(self.device))

    def __len__(self) -> int:
        full, rest = divmod(self.shard, self.batch_size)
        return full if self.drop_last or not rest else full + 1

    @property
    def images_per_epoch(self) -> int:
        return len(self) * self.batch_size

    def epoch(self, epoch: int) -> Iterator[tuple[list[torch.Tensor], torch.Tensor]]:
        generator = torch.Generator().manual_seed(self.seed * 100_003 + epoch)
        order = torch.randperm(len(self.indices), generator=generator)  # positions in indices
        if self.world_size > 1:
            order = order[self.rank:self.shard * self.world_size:self.world_size]
            generator = torch.Generator().manual_seed(
                (self.seed * 100_003 + epoch) * 1_009 + self.rank + 1)
        # a policy's alternating flip: fixed per image (its position in indices), reversed
        # every other epoch; a single view only (two views of an image must differ)
        flips = (self.augment.epoch_flips(len(self.indices), self.seed, epoch)
                 if self.n_views == 1 and getattr(self.augment, "alternating_flip", False)
                 else None)
        for start in range(0, len(order), self.batch_size):
            chunk = order[start:start + self.batch_size]
            if self.drop_last and len(chunk) < self.batch_size:
                break
            raw, labels = self._gather(chunk)
            fixed = {} if flips is None else {"flip": flips[chunk]}
            views = [self._to_device(self.augment(raw, generator, **fixed) if self.augment
                                     else raw.float().div_(255)) for _ in range(self.n_views)]
            yield views, labels

    def _gather(self, positions: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The uint8 images and labels at ``positions`` of ``indices``: on the device when
        they live there, else read from ``images`` on the CPU (labels sent to the device)."""
        if self.resident is not None:
            on_device = positions.to(self.device)
            return self.resident[0][on_device], self.resident[1][on_device]
        rows = self.indices[positions]
        return (torch.from_numpy(gather_rows(self.images, rows.numpy())),
                self.labels[rows].to(self.device, non_blocking=True))

    def _to_device(self, batch: torch.Tensor) -> torch.Tensor:
        return batch.to(self.device, non_blocking=True).contiguous(
            memory_format=self.memory_format)
