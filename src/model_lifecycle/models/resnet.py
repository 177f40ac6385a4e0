"""ResNet-18 for small images (He et al. 2016): 3×3 stem at stride 1, no max-pool,
and a width multiplier."""

from __future__ import annotations

import torch
from torch import nn
from torchvision.models.resnet import BasicBlock

from model_lifecycle.models.classifier import Encoder
from model_lifecycle.models.registry import register


@register("resnet18_small")
def resnet18_small(in_channels: int, width: float = 1.0) -> Encoder:
    """torchvision's BasicBlock, layers (2, 2, 2, 2), widths 64·w … 512·w."""
    widths = [max(8, int(round(c * width))) for c in (64, 128, 256, 512)]
    stem = nn.Sequential(nn.Conv2d(in_channels, widths[0], 3, padding=1, bias=False),
                         nn.BatchNorm2d(widths[0]), nn.ReLU(inplace=True))
    stages: list[nn.Module] = [stem]
    cin = widths[0]
    for i, cout in enumerate(widths):
        stride = 1 if i == 0 else 2
        stages.append(nn.Sequential(_block(cin, cout, stride), _block(cout, cout, 1)))
        cin = cout
    encoder = Encoder(stages, cin)
    _zero_init_residuals(encoder)
    return encoder


def _block(cin: int, cout: int, stride: int) -> BasicBlock:
    downsample = None
    if stride != 1 or cin != cout:
        downsample = nn.Sequential(nn.Conv2d(cin, cout, 1, stride=stride, bias=False),
                                   nn.BatchNorm2d(cout))
    return BasicBlock(cin, cout, stride=stride, downsample=downsample)


def _zero_init_residuals(encoder: nn.Module) -> None:
    # Each residual branch starts as the identity (Goyal et al. 2017): trains faster.
    for module in encoder.modules():
        if isinstance(module, BasicBlock):
            torch.nn.init.zeros_(module.bn2.weight)
