"""The interface every model of the registry shares."""

from __future__ import annotations

import torch
from torch import nn


class Encoder(nn.Module):
    """Images B×C×H×W (float, [0, 1]) → features B×``feature_dim``.

    ``stages`` lists the encoder's blocks from input to output; ``partial`` fine-tuning
    freezes the first K of them.
    """

    feature_dim: int

    def __init__(self, stages: list[nn.Module], feature_dim: int) -> None:
        super().__init__()
        self.stages = nn.ModuleList(stages)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.feature_dim = feature_dim

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for stage in self.stages:
            x = stage(x)
        return self.pool(x).flatten(1)


class Classifier(nn.Module):
    """``head(encoder(x))``; built by :func:`model_lifecycle.models.build_model`.

    ``spec`` records how to rebuild the architecture (name and arguments), so a saved
    state dict describes itself.
    """

    def __init__(self, encoder: Encoder, num_classes: int, spec: dict) -> None:
        super().__init__()
        self.encoder = encoder
        self.head = nn.Linear(encoder.feature_dim, num_classes)
        self.spec = dict(spec)

    @property
    def num_classes(self) -> int:
        return self.head.out_features

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.encoder(x))

    def features(self, x: torch.Tensor) -> torch.Tensor:
        return self.encoder(x)
