"""SimCLR: contrastive learning with the NT-Xent loss (Chen et al. 2020,
https://arxiv.org/abs/2002.05709).

Usage::

    head, loss = ProjectionHead(512), NTXentLoss(temperature=0.2)
    value = loss(head(encoder(view1)), head(encoder(view2)))
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


class ProjectionHead(nn.Module):
    """The MLP g(·) of SimCLR: Linear → BN → ReLU → Linear (paper: 2048 → 128)."""

    def __init__(self, in_dim: int, hidden_dim: int = 512, out_dim: int = 128) -> None:
        super().__init__()
        if min(in_dim, hidden_dim, out_dim) < 1:
            raise ValueError("dimensions must be positive")
        self.net = nn.Sequential(nn.Linear(in_dim, hidden_dim, bias=False),
                                 nn.BatchNorm1d(hidden_dim), nn.ReLU(inplace=True),
                                 nn.Linear(hidden_dim, out_dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


class NTXentLoss(nn.Module):
    """Normalised temperature-scaled cross-entropy over the 2N views of a batch.

    For each view the positive is the other view of the same image; the 2N − 2 views
    of the other images are the negatives. Averaged over all 2N views.
    """

    def __init__(self, temperature: float = 0.5) -> None:
        super().__init__()
        if temperature <= 0:
            raise ValueError(f"temperature must be positive, got {temperature}")
        self.temperature = temperature

    def forward(self, z1: torch.Tensor, z2: torch.Tensor) -> torch.Tensor:
        if z1.shape != z2.shape or z1.ndim != 2:
            raise ValueError(f"expected two N×D batches, got {tuple(z1.shape)} and "
                             f"{tuple(z2.shape)}")
        n = len(z1)
        # in float32 under autocast too: bfloat16's 8-bit mantissa would blur the
        # similarities (then divided by a small temperature) that tell the views apart
        with torch.autocast(z1.device.type, enabled=False):
            z = F.normalize(torch.cat([z1, z2]).float(), dim=1)  # 2N×D
            logits = z @ z.T / self.temperature  # 2N×2N cosine similarities
        logits.fill_diagonal_(float("-inf"))  # a view is not its own negative
        targets = torch.cat([torch.arange(n, 2 * n), torch.arange(n)]).to(z.device)
        return F.cross_entropy(logits, targets)
