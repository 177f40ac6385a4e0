"""Each batched op against a property or torchvision's own single-image op."""

import math

import pytest
import torch
from torchvision.transforms.v2 import functional as TF

from model_lifecycle.augment import ops


def _gen(seed=0):
    return torch.Generator().manual_seed(seed)


def _batch(b=16, c=3, h=12, w=10, seed=0):
    return torch.rand(b, c, h, w, generator=_gen(seed))


@pytest.mark.parametrize("b", [1, 7, 32])
def test_random_crop_is_an_integer_shift_of_the_padded_image(b):
    x = _batch(b)
    out = ops.random_crop(x, 3, _gen())
    padded = torch.nn.functional.pad(x, (3, 3, 3, 3))
    for i in range(b):  # every output is some window of the padded input
        windows = padded[i].unfold(1, 12, 1).unfold(2, 10, 1)  # C×dy×dx×H×W
        match = (windows == out[i][:, None, None]).flatten(3).all(-1).all(0)
        assert match.any()


def test_random_crop_shifts_differ_between_images():
    x = _batch(1).expand(32, -1, -1, -1)
    out = ops.random_crop(x, 3, _gen())
    assert len({tuple(o.flatten().tolist()) for o in out}) > 10


def test_flip_probability_one_and_zero():
    x = _batch()
    assert torch.equal(ops.horizontal_flip(x, 1.0, _gen()), x.flip(-1))
    assert torch.equal(ops.horizontal_flip(x, 0.0, _gen()), x)


def test_full_size_resized_crop_is_the_identity_and_flip_fuses_into_it():
    x = _batch()
    theta = ops.resized_crop_affine(len(x), 12, 10, (1.0, 1.0), (10 / 12, 10 / 12), _gen())
    torch.testing.assert_close(ops.warp(x, theta), x, atol=1e-5, rtol=0)
    flipped = ops.warp(x, ops.flip_affine(theta, 1.0, _gen()))
    torch.testing.assert_close(flipped, x.flip(-1), atol=1e-5, rtol=0)


def test_resized_crop_areas_follow_the_scale_range():
    theta = ops.resized_crop_affine(4000, 32, 32, (0.25, 0.5), (1.0, 1.0), _gen())
    area = theta[:, 0, 0] * theta[:, 1, 1]
    assert area.min() >= 0.25 - 1e-6 and area.max() <= 0.5 + 1e-6
    assert abs(area.mean().item() - 0.375) < 0.01


def test_warp_rotation_is_a_rotation_on_non_square_images():
    x = torch.zeros(1, 1, 21, 41)
    x[0, 0, 10, 28] = 1  # 8 px right of the centre
    quarter = torch.tensor([[[0.0, 1.0, 0.0], [-1.0, 0.0, 0.0]]])  # output→input
    out = ops.warp(x, quarter, mode="nearest")
    y, xx = divmod(int(out.flatten().argmax()), 41)
    assert math.hypot(y - 10, xx - 20) == pytest.approx(8, abs=1)
    assert abs(xx - 20) <= 1  # a quarter turn moves it onto the vertical axis


@pytest.mark.parametrize("b", [1, 5])
def test_fused_colour_jitter_matches_the_four_steps_applied_one_by_one(b):
    x = _batch(b) * 0.5 + 0.25  # away from the clamps
    out = ops.color_jitter(x, 0.2, 0.2, 0.2, 0.05, 1.0, _gen(3))
    g = _gen(3)
    apply = ops.bernoulli(1.0, b, g)
    bright, contrast, sat = (ops._factor(0.2, apply, g) for _ in range(3))
    hue = ops.uniform(-0.05, 0.05, b, g)
    expected = ops.adjust_hue(ops.adjust_saturation(ops.adjust_contrast(
        ops.adjust_brightness(x, bright), contrast), sat), hue)
    torch.testing.assert_close(out, expected, atol=1e-5, rtol=0)


def test_brightness_contrast_saturation_agree_with_torchvision():
    x = _batch(4)
    for ours, theirs in [(ops.adjust_brightness, TF.adjust_brightness),
                         (ops.adjust_contrast, TF.adjust_contrast),
                         (ops.adjust_saturation, TF.adjust_saturation)]:
        factors = torch.tensor([0.5, 0.9, 1.2, 1.6])
        out = ours(x, factors)
        for i, f in enumerate(factors.tolist()):
            # torchvision's luma weights are 0.2989/0.587/0.114, ours ITU-R 601's 0.299/…
            torch.testing.assert_close(out[i], theirs(x[i], f), atol=2e-4, rtol=0)


def test_hue_rotation_keeps_grey_and_a_full_turn_is_the_identity():
    grey = torch.full((2, 3, 4, 4), 0.4)
    torch.testing.assert_close(ops.adjust_hue(grey, torch.tensor([0.2, -0.3])), grey)
    x = _batch(2) * 0.5 + 0.25
    torch.testing.assert_close(ops.adjust_hue(x, torch.tensor([1.0, 0.0])), x, atol=1e-5,
                               rtol=0)
    red = torch.zeros(1, 3, 1, 1)
    red[0, 0] = 0.8
    shifted = ops.adjust_hue(red, torch.tensor([1 / 3]))  # a third of a turn: towards green
    assert shifted[0, 1] > shifted[0, 0]


def test_jitter_applies_to_a_share_p_of_images():
    x = _batch(1).expand(400, -1, -1, -1).contiguous()
    out = ops.color_jitter(x, 0.4, 0.4, 0.4, 0.1, 0.25, _gen())
    changed = (out - x).flatten(1).abs().amax(1) > 1e-6
    assert 0.15 < changed.float().mean() < 0.35


def test_single_channel_images_pass_through_colour_ops():
    x = _batch(c=1)
    assert ops.color_jitter(x, 0.4, 0.4, 0.4, 0.1, 1.0, _gen()).shape == x.shape
    assert torch.equal(ops.random_grayscale(x, 1.0, _gen()), x)


def test_grayscale_makes_channels_equal():
    out = ops.random_grayscale(_batch(), 1.0, _gen())
    assert torch.equal(out[:, 0], out[:, 1]) and torch.equal(out[:, 1], out[:, 2])
    torch.testing.assert_close(out[0], TF.rgb_to_grayscale(_batch()[0], 3), atol=2e-4, rtol=0)


def test_blur_matches_torchvision_per_image_sigma():
    x = _batch(3, h=30, w=30)
    out = ops.gaussian_blur(x, (0.5, 2.0), 1.0, _gen(5))
    g2 = _gen(5)  # replay the draws: first who is blurred, then the sigmas
    ops.bernoulli(1.0, 3, g2)
    sigmas = ops.uniform(0.5, 2.0, 3, g2)
    for i, s in enumerate(sigmas.tolist()):
        expected = TF.gaussian_blur(x[i], kernel_size=[3, 3], sigma=[s, s])
        torch.testing.assert_close(out[i], expected, atol=1e-4, rtol=0)


def test_blur_with_probability_zero_is_the_identity():
    x = _batch()
    torch.testing.assert_close(ops.gaussian_blur(x, (0.1, 2.0), 0.0, _gen()), x)


def test_erasing_covers_an_area_in_range_with_noise():
    x = torch.full((500, 1, 20, 20), -1.0)  # outside [0, 1]: erased pixels are visible
    out = ops.random_erasing(x, (0.1, 0.2), (0.5, 2.0), 1.0, _gen())
    share = (out >= 0).float().flatten(1).mean(1)
    assert share.min() >= 0.05 and share.max() <= 0.26
    assert out[out >= 0].std() > 0.2  # noise, not a constant


def test_views_are_reproducible_from_the_seed():
    x = _batch()
    a = ops.random_crop(x, 2, _gen(9))
    b = ops.random_crop(x, 2, _gen(9))
    c = ops.random_crop(x, 2, _gen(10))
    assert torch.equal(a, b) and not torch.equal(a, c)
