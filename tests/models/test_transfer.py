"""An encoder pretrained on RGB images reads grayscale ones and the reverse, exactly as
it read the images the project would have made of them."""

from __future__ import annotations

import copy

import pytest
import torch

from model_lifecycle.errors import LifecycleError
from model_lifecycle.models.registry import build_model
from model_lifecycle.models.transfer import match_channels


@pytest.mark.parametrize("arch", ["small_cnn", "fast_cnn", "resnet18_small"])
def test_an_rgb_encoder_reads_grayscale_as_the_same_image_repeated_to_rgb(arch):
    torch.manual_seed(0)
    rgb = build_model(arch, 4, 3).eval()
    gray = copy.deepcopy(rgb)
    said = match_channels(gray, 1)
    x = torch.rand(5, 1, 16, 16)
    torch.testing.assert_close(gray(x), rgb(x.repeat(1, 3, 1, 1)), rtol=1e-4, atol=1e-5)
    assert gray.spec["in_channels"] == 1 and "3 to 1" in said


def test_a_grayscale_encoder_reads_rgb_as_its_channel_mean():
    torch.manual_seed(0)
    gray = build_model("small_cnn", 4, 1, width=8).eval()
    rgb = copy.deepcopy(gray)
    match_channels(rgb, 3)
    x = torch.rand(5, 3, 16, 16)
    torch.testing.assert_close(rgb(x), gray(x.mean(1, keepdim=True)), rtol=1e-4, atol=1e-5)
    assert rgb.spec["in_channels"] == 3


def test_matching_channels_change_nothing():
    model = build_model("small_cnn", 4, 3, width=8)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    assert match_channels(model, 3) is None
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())


def test_other_channel_counts_are_refused_in_one_sentence():
    model = build_model("small_cnn", 4, 3, width=8)
    with pytest.raises(LifecycleError, match=r"only grayscale ↔ RGB .* ingest.channels: 3"):
        match_channels(model, 4)
