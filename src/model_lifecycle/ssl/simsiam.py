"""SimSiam: non-contrastive learning with a predictor and a stop-gradient
(Chen & He 2021, https://arxiv.org/abs/2011.10566).

Usage::

    projector, predictor, loss = SimSiamProjector(512), SimSiamPredictor(), SimSiamLoss()
    z1, z2 = projector(encoder(view1)), projector(encoder(view2))
    value = loss(predictor(z1), predictor(z2), z1, z2)
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


class SimSiamProjector(nn.Module):
    """Projection MLP (paper: 3 layers, 2048 wide, BN on the output too)."""

    def __init__(self, in_dim: int, dim: int = 512) -> None:
        super().__init__()
        self.net = nn.Sequential(
            nn.Linear(in_dim, dim, bias=False), nn.BatchNorm1d(dim), nn.ReLU(inplace=True),
            nn.Linear(dim, dim, bias=False), nn.BatchNorm1d(dim), nn.ReLU(inplace=True),
            nn.Linear(dim, dim, bias=False), nn.BatchNorm1d(dim, affine=False))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


class SimSiamPredictor(nn.Module):
    """Prediction MLP h with a bottleneck (paper: 2048 → 512 → 2048)."""

    def __init__(self, dim: int = 512, hidden_dim: int = 128) -> None:
        super().__init__()
        self.net = nn.Sequential(nn.Linear(dim, hidden_dim, bias=False),
                                 nn.BatchNorm1d(hidden_dim), nn.ReLU(inplace=True),
                                 nn.Linear(hidden_dim, dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


class SimSiamLoss(nn.Module):
    """Symmetrised negative cosine similarity, gradients stopped on the targets z:
    ``½·D(p1, sg(z2)) + ½·D(p2, sg(z1))``, with D = −cos. In [−1, 1]; −1 is perfect."""

    def forward(self, p1: torch.Tensor, p2: torch.Tensor, z1: torch.Tensor,
                z2: torch.Tensor) -> torch.Tensor:
        return -(F.cosine_similarity(p1.float(), z2.detach().float(), dim=1).mean()
                 + F.cosine_similarity(p2.float(), z1.detach().float(), dim=1).mean()) / 2
