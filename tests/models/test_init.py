"""Data-dependent and identity initialisations: whitened stem, Dirac convolutions."""

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from model_lifecycle.errors import LifecycleError
from model_lifecycle.models import build_model
from model_lifecycle.models.init import dirac_convs, whiten_first_conv


def _correlated_images(n=400, seed=0):
    """Smooth, correlated colour images: neighbouring pixels and channels move together."""
    generator = torch.Generator().manual_seed(seed)
    coarse = torch.rand(n, 1, 4, 4, generator=generator)
    tint = torch.rand(n, 3, 1, 1, generator=generator)
    images = F.interpolate(coarse, size=16, mode="bilinear") * (0.5 + tint)
    return (images + 0.05 * torch.rand(n, 3, 16, 16, generator=generator)).clamp(0, 1)


def test_the_filters_whiten_the_patches_and_stay_frozen():
    torch.manual_seed(0)
    model = build_model("fast_cnn", 10, 3, width=0.5)  # stem: 24 filters of 3×3×3
    images = _correlated_images()
    conv = whiten_first_conv(model, images, eps=0.0)
    responses = F.conv2d(images, conv.weight[:12]).permute(0, 2, 3, 1).reshape(-1, 12)
    torch.testing.assert_close(torch.cov(responses.T), torch.eye(12), atol=1e-3, rtol=0)
    torch.testing.assert_close(conv.weight[12:], -conv.weight[:12])  # ± pairs
    assert not conv.weight.requires_grad and model.training


def test_the_patches_are_what_the_convolution_sees():
    torch.manual_seed(0)
    scaled = nn.Sequential(nn.Identity(), nn.Conv2d(3, 8, 3))
    scaled[0].forward = lambda x: 10 * x  # preprocessing in front of the convolution
    images = _correlated_images()
    conv = whiten_first_conv(scaled, images, eps=0.0)
    responses = F.conv2d(10 * images, conv.weight[:4]).permute(0, 2, 3, 1).reshape(-1, 4)
    torch.testing.assert_close(torch.cov(responses.T), torch.eye(4), atol=1e-3, rtol=0)


def test_filters_beyond_the_patch_size_keep_their_initialisation():
    torch.manual_seed(0)
    model = build_model("fast_cnn", 10, 1, width=0.5)  # 1 channel: 9-value patches
    stem = next(m for m in model.modules() if isinstance(m, nn.Conv2d))
    before = stem.weight.detach().clone()
    whiten_first_conv(model, _correlated_images()[:, :1])
    assert not torch.equal(stem.weight[:18], before[:18])
    assert torch.equal(stem.weight[18:], before[18:])


def test_a_model_without_a_convolution_is_refused_by_name():
    with pytest.raises(LifecycleError, match="whiten_stem"):
        whiten_first_conv(nn.Sequential(nn.Flatten(), nn.Linear(3 * 16 * 16, 2)),
                          _correlated_images(8))


def test_dirac_convs_pass_their_inputs_through_on_the_first_filters():
    torch.manual_seed(0)
    model = build_model("fast_cnn", 10, 3, width=0.5)
    convs = [m for m in model.modules() if isinstance(m, nn.Conv2d)]
    stem_before = convs[0].weight.detach().clone()
    assert dirac_convs(model) == len(convs) - 1
    assert torch.equal(convs[0].weight, stem_before)  # the first convolution is left alone
    for conv in convs[1:]:
        x = torch.randn(2, conv.in_channels, 6, 6)
        kept = min(conv.in_channels, conv.out_channels)
        torch.testing.assert_close(conv(x)[:, :kept], x[:, :kept])
        if conv.out_channels > kept:  # the other filters keep their random values
            assert conv.weight[kept:].abs().sum() > 0
