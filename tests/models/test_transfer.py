"""An encoder pretrained on RGB images reads grayscale ones and the reverse, exactly as
it read the images the project would have made of them."""

from __future__ import annotations

import copy

import numpy as np
import pytest
import torch
from PIL import Image

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


def test_a_grayscale_encoder_reads_rgb_as_the_grayscale_image_ingest_makes_of_it():
    torch.manual_seed(0)
    gray = build_model("small_cnn", 4, 1, width=8).eval()
    rgb = copy.deepcopy(gray)
    match_channels(rgb, 3)
    # pure red, green and blue 4-pixel squares: equal channel means, unequal luma
    colours = np.random.default_rng(0).integers(0, 3, (5, 4, 4))
    pixels = (255 * np.eye(3, dtype=np.uint8)[colours]).repeat(4, 1).repeat(4, 2)
    # the reference: PIL's RGB -> L, as ingest converts for channels: 1
    luma = np.stack([np.asarray(Image.fromarray(p).convert("L")) for p in pixels])
    x = torch.from_numpy(pixels).permute(0, 3, 1, 2).float() / 255
    y = torch.from_numpy(luma).unsqueeze(1).float() / 255
    torch.testing.assert_close(rgb.encoder(x), gray.encoder(y), rtol=1e-3, atol=5e-5)
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
