"""Plain convolutional encoders: the fast default for CPU runs, a conv-pool network
for short training budgets, and a VGG."""

from __future__ import annotations

from collections.abc import Sequence

from torch import nn

from model_lifecycle.errors import LifecycleError
from model_lifecycle.models.classifier import Encoder
from model_lifecycle.models.registry import register


def conv_bn(cin: int, cout: int) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(cin, cout, 3, padding=1, bias=False),
                         nn.BatchNorm2d(cout), nn.ReLU(inplace=True))


@register("small_cnn")
def small_cnn(in_channels: int, width: int = 32) -> Encoder:
    """Three conv-BN-ReLU pairs at widths w, 2w, 4w, max-pooled between: fast on a CPU."""
    w = width
    stages = [
        nn.Sequential(conv_bn(in_channels, w), conv_bn(w, w)),
        nn.Sequential(nn.MaxPool2d(2), conv_bn(w, 2 * w), conv_bn(2 * w, 2 * w)),
        nn.Sequential(nn.MaxPool2d(2), conv_bn(2 * w, 4 * w), conv_bn(4 * w, 4 * w)),
    ]
    return Encoder(stages, 4 * w)


@register("fast_cnn")
def fast_cnn(in_channels: int, width: float = 0.5,
             widths: Sequence[int] | None = None) -> Encoder:
    """The network of Keller Jordan's airbench (2024, "94% on CIFAR-10 in 3.29 seconds")
    with a width multiplier: a 3×3 stem, then three blocks of conv → 2×2 max-pool →
    BN → ReLU → conv → BN → ReLU at widths 64·w, 256·w, 256·w, and a global max-pool.

    Pooling right after each block's first convolution runs its BN, activation and second
    convolution at a quarter of the pixels: at width 0.5 it trains as fast as
    ``resnet18_small`` at width 0.25 on a CPU and is more accurate in a short budget
    (``benchmarks/cifar10_budget.py``). Kept plain (no whitening initialisation, no
    GELU) so that pruning, folding and INT8 quantization treat it like any other CNN.

    ``widths`` (stem, block 1, block 2, block 3 channels) replaces the multiplier: the
    parameters sit in blocks 2 and 3, the compute in the stem and block 1 (full
    resolution), so a small student keeps a wide front and a narrow back, e.g.
    ``widths=[24, 32, 56, 56]``: 4.2× fewer parameters than width 0.5.
    """
    if widths is None:
        stem, *blocks = [max(8, int(round(c * width))) for c in (48, 64, 256, 256)]
    elif len(widths) == 4 and all(isinstance(c, int) and c > 0 for c in widths):
        stem, *blocks = widths
    else:
        raise LifecycleError(f"fast_cnn widths {widths!r} must be four positive channel "
                             "counts (stem, block 1, block 2, block 3): fix arch_kwargs.widths.")
    stages: list[nn.Module] = [conv_bn(in_channels, stem)]
    cin = stem
    for cout in blocks:
        stages.append(nn.Sequential(
            nn.Conv2d(cin, cout, 3, padding=1, bias=False), nn.MaxPool2d(2, ceil_mode=True),
            nn.BatchNorm2d(cout), nn.ReLU(inplace=True), conv_bn(cout, cout)))
        cin = cout
    stages[-1].append(nn.AdaptiveMaxPool2d(1))
    return Encoder(stages, cin)


@register("vgg11_small")
def vgg11_small(in_channels: int, width: int = 64) -> Encoder:
    """VGG-11 (Simonyan & Zisserman 2015, configuration A) with batch norm, for 32×32
    inputs: the five stages keep their widths (64 … 512); pooling stops at 2×2 so that
    8×8 inputs still work; global average pooling replaces the 4096-wide classifier."""
    w = width
    plan = [[w], [2 * w], [4 * w, 4 * w], [8 * w, 8 * w], [8 * w, 8 * w]]
    stages, cin = [], in_channels
    for i, widths in enumerate(plan):
        layers: list[nn.Module] = [nn.MaxPool2d(2, ceil_mode=True)] if 0 < i < 4 else []
        for cout in widths:
            layers.append(conv_bn(cin, cout))
            cin = cout
        stages.append(nn.Sequential(*layers))
    return Encoder(stages, cin)
