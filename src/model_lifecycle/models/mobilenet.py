"""torchvision's MobileNetV3-small with its stem adapted to small inputs."""

from __future__ import annotations

from torch import nn
from torchvision.models import mobilenet_v3_small

from model_lifecycle.models.classifier import Encoder
from model_lifecycle.models.registry import register


@register("mobilenet_v3_small")
def mobilenet_v3_small_encoder(in_channels: int, width: float = 1.0) -> Encoder:
    """The stem convolution runs at stride 1 (not 2) and takes ``in_channels``: on 32×32
    inputs the last feature map is 2×2 instead of 1×1. No weights are downloaded."""
    features = mobilenet_v3_small(weights=None, width_mult=width).features
    stem = features[0][0]
    features[0][0] = nn.Conv2d(in_channels, stem.out_channels, 3, stride=1, padding=1,
                               bias=False)
    stages = list(features.children())
    return Encoder(stages, features[-1].out_channels)
