"""Test-time augmentation in ``predict``: which views are averaged, and with what weight."""

import numpy as np
import pytest
import torch
from torch import nn

from model_lifecycle.errors import LifecycleError
from model_lifecycle.models.predict import _shift, predict


class Pixels(nn.Module):
    """Outputs the image itself, flattened: every view's contribution is visible."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.flatten(1)


def test_shift_moves_content_diagonally_and_reflects_the_border():
    x = torch.zeros(1, 1, 5, 5)
    x[0, 0, 2, 2] = 1.0
    assert _shift(x, 1)[0, 0, 3, 3] == 1 and _shift(x, 1).sum() == 1
    assert _shift(x, -1)[0, 0, 1, 1] == 1 and _shift(x, -1).sum() == 1
    ramp = torch.arange(5.0).expand(1, 1, 5, 5)
    assert _shift(ramp, 1)[0, 0, 0].tolist() == [1, 0, 1, 2, 3]  # reflected, not zeros


def test_predict_without_tta_is_the_plain_output():
    images = np.random.default_rng(0).integers(0, 256, (3, 1, 4, 4), dtype=np.uint8)
    out = predict(Pixels(), images, np.arange(3))
    assert torch.allclose(out, torch.from_numpy(images).float().div(255).flatten(1))


def test_flip_and_shift_tta_average_half_unshifted_half_shifted():
    images = np.random.default_rng(1).integers(0, 256, (2, 3, 6, 6), dtype=np.uint8)
    x = torch.from_numpy(images).float().div(255)
    views = [x, x.flip(-1)]
    unshifted = sum(v.flatten(1) for v in views) / 2
    shifted = sum(_shift(v, d).flatten(1) for v in views for d in (-1, 1)) / 4
    out = predict(Pixels(), images, np.arange(2), flip_tta=True, shift_tta=1)
    assert torch.allclose(out, (unshifted + shifted) / 2)
    assert torch.allclose(predict(Pixels(), images, np.arange(2), flip_tta=True), unshifted)


def test_a_shift_as_large_as_the_image_is_refused_in_one_sentence():
    images = np.zeros((1, 1, 4, 4), dtype=np.uint8)
    with pytest.raises(LifecycleError, match=r"finetune.shift_tta is 4 pixels .* 4×4"):
        predict(Pixels(), images, np.arange(1), shift_tta=4)
