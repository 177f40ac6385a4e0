"""The CIFAR-10-C corruptions: contract (shape, dtype, seeding, errors), severity ladder,
and one property per family checked against SciPy, Pillow or the colour-space definition."""

from __future__ import annotations

import colorsys
import io

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image
from scipy import ndimage

from model_lifecycle.errors import LifecycleError
from model_lifecycle.trust.corruptions import (
    CORRUPTIONS,
    SEVERITIES,
    corrupt,
    corruption_names,
    family,
)

NAMES = corruption_names()
RANDOM = {"gaussian_noise", "shot_noise", "impulse_noise", "speckle_noise", "motion_blur"}


def natural(n: int, channels: int, h: int, w: int, seed: int) -> torch.Tensor:
    """Smooth images with a roughly 1/f spectrum (octaves of upsampled noise) and a
    gradient, levels 0.1…0.9 — pure noise would make the blurs behave oddly."""
    g = torch.Generator().manual_seed(seed)
    x = torch.zeros(n, channels, h, w)
    for size, amplitude in ((2, 1.0), (4, 0.5), (8, 0.25), (16, 0.125)):
        low = torch.rand((n, channels, size, size), generator=g)
        x += amplitude * F.interpolate(low, size=(h, w), mode="bilinear")
    x += torch.linspace(-0.5, 0.5, w) * (torch.rand((n, 1, 1, 1), generator=g) - 0.5)
    lo, hi = x.amin((1, 2, 3), keepdim=True), x.amax((1, 2, 3), keepdim=True)
    return torch.round((0.1 + 0.8 * (x - lo) / (hi - lo)) * 255).to(torch.uint8)


def hwc(image: torch.Tensor) -> np.ndarray:
    return image.permute(1, 2, 0).numpy()


def test_registry_is_twelve_corruptions_in_family_order():
    assert len(NAMES) == 12 and SEVERITIES == (1, 2, 3, 4, 5)
    families = [family(n) for n in NAMES]
    order = ["noise", "blur", "digital", "photometric"]
    assert families == sorted(families, key=order.index)
    assert {f: families.count(f) for f in order} == {"noise": 4, "blur": 4, "digital": 2,
                                                    "photometric": 2}
    assert all(CORRUPTIONS[n].family == family(n) for n in NAMES)


@pytest.mark.parametrize("name", NAMES)
@pytest.mark.parametrize(("channels", "h", "w"), [(3, 16, 16), (1, 8, 12)])
def test_contract_every_severity(name, channels, h, w):
    images = natural(3, channels, h, w, seed=1)
    for severity in SEVERITIES:
        out = corrupt(images, name, severity, seed=7)
        assert out.shape == images.shape and out.dtype == torch.uint8
        assert out.device.type == "cpu"
        assert torch.equal(out, corrupt(images, name, severity, seed=7))
        other = corrupt(images, name, severity, seed=8)
        # the random ones change with the seed, the others ignore it
        assert torch.equal(out, other) is (name not in RANDOM)
    assert not torch.equal(out, images)  # severity 5 visibly changes every type


@pytest.mark.parametrize("name", sorted(RANDOM))
def test_noise_of_an_image_does_not_depend_on_the_rest_of_the_batch(name):
    images = natural(4, 3, 16, 16, seed=2)
    whole = corrupt(images, name, 3, seed=0)
    assert torch.equal(corrupt(images[:2], name, 3, seed=0), whole[:2])


def test_corruptions_and_severities_draw_independent_noise():
    gray = torch.full((8, 3, 16, 16), 128, dtype=torch.uint8)

    def residual(name: str, severity: int) -> np.ndarray:
        return (corrupt(gray, name, severity, seed=0).double() - 128).flatten().numpy()

    pairs = [(residual("gaussian_noise", 1), residual("gaussian_noise", 2)),
             (residual("gaussian_noise", 2), residual("speckle_noise", 2)),
             (residual("shot_noise", 5), residual("speckle_noise", 5))]
    for a, b in pairs:
        assert abs(np.corrcoef(a, b)[0, 1]) < 0.1


@pytest.mark.parametrize("name", NAMES)
def test_strength_grows_with_severity(name):
    images = natural(32, 3, 32, 32, seed=0)
    distance = [(corrupt(images, name, s, seed=0).float() - images.float()).abs().mean().item()
                for s in SEVERITIES]
    for s in range(1, 5):
        if (name, s) == ("motion_blur", 3):
            # the reference is flat here: (6, 2) → (8, 2) only adds taps weighing < 1e-9
            assert distance[s] > 0.97 * distance[s - 1], distance
        else:
            assert distance[s] > 1.02 * distance[s - 1], distance
    assert distance[0] > 0


# /////////////// noise ///////////////

def test_noise_statistics_match_their_parameters():
    gray = torch.full((64, 3, 32, 32), 128, dtype=torch.uint8)
    x = 128 / 255
    delta = corrupt(gray, "gaussian_noise", 5, seed=0).double() / 255 - x
    assert delta.mean().item() == pytest.approx(0, abs=2e-3)
    assert delta.std().item() == pytest.approx(0.10, rel=0.03)
    speckle = corrupt(gray, "speckle_noise", 5, seed=0).double() / 255 - x
    assert speckle.std().item() == pytest.approx(0.2 * x, rel=0.03)
    shot = corrupt(gray, "shot_noise", 5, seed=0).double() / 255
    # Poisson(50 x) / 50: mean x, variance x / 50
    assert shot.mean().item() == pytest.approx(x, abs=3e-3)
    assert shot.var().item() == pytest.approx(x / 50, rel=0.05)
    impulse = corrupt(gray, "impulse_noise", 5, seed=0)
    salt, pepper = (impulse == 255).double().mean(), (impulse == 0).double().mean()
    assert (salt + pepper).item() == pytest.approx(0.07, rel=0.05)
    assert salt.item() == pytest.approx(pepper.item(), rel=0.1)
    assert ((impulse == 128) | (impulse == 255) | (impulse == 0)).all()


# /////////////// blur ///////////////

@pytest.mark.parametrize(("severity", "sigma"), [(1, 0.4), (2, 0.6), (5, 1.0)])
def test_gaussian_blur_is_scipy_gaussian_filter_as_skimage_calls_it(severity, sigma):
    images = natural(4, 3, 16, 20, seed=3)
    out = corrupt(images, "gaussian_blur", severity, seed=0)
    for image, result in zip(images, out, strict=True):
        # skimage.filters.gaussian: mode="nearest", truncate=4, channel axis left alone
        expected = ndimage.gaussian_filter(image.double().numpy() / 255, (0, sigma, sigma),
                                           mode="nearest", truncate=4.0)
        assert np.abs(np.round(expected * 255) - result.numpy()).max() <= 1


def test_defocus_blur_is_opencv_disk_filter():
    images = natural(2, 3, 16, 16, seed=4)
    for severity, (radius, alias_blur) in [(3, (0.5, 0.6)), (5, (1.5, 0.1))]:
        t = np.arange(-8, 9)
        xx, yy = np.meshgrid(t, t)
        disk = ((xx**2 + yy**2) <= radius**2).astype(float)
        disk /= disk.sum()
        g = np.exp(-np.arange(-1, 2) ** 2 / (2 * alias_blur**2))
        # cv2.GaussianBlur 3×3 and cv2.filter2D, both with BORDER_REFLECT_101 ("mirror")
        kernel = ndimage.correlate(disk, np.outer(g, g) / g.sum() ** 2, mode="mirror")
        out = corrupt(images, "defocus_blur", severity, seed=0)
        for image, result in zip(images, out, strict=True):
            expected = np.stack([ndimage.correlate(c, kernel, mode="mirror")
                                 for c in image.double().numpy() / 255])
            assert np.abs(np.round(expected * 255) - result.numpy()).max() <= 1


def test_motion_blur_smears_a_dot_along_a_one_sided_line():
    flat = torch.full((3, 1, 24, 24), 90, dtype=torch.uint8)
    assert torch.equal(corrupt(flat, "motion_blur", 5, seed=0), flat)  # weights sum to 1
    dot = torch.zeros((8, 1, 41, 41), dtype=torch.uint8)
    dot[:, :, 20, 20] = 255
    out = corrupt(dot, "motion_blur", 5, seed=0)[:, 0].double()
    # ImageMagick (9, 2.5): 19 taps, weights exp(-i²/2σ²), the centre tap the heaviest
    weights = np.exp(-np.arange(19) ** 2 / (2 * 2.5**2))
    weights /= weights.sum()
    assert out[:, 20, 20].numpy() == pytest.approx(255 * weights[0], abs=1)
    assert out.sum((1, 2)).numpy() == pytest.approx(255, abs=5)
    rows, cols = torch.nonzero(out.sum(0), as_tuple=True)
    # the dot is read from offsets 0 … 18 ahead at |angle| ≤ 45°: it lands behind it
    assert (cols <= 20).all() and (20 - cols >= (rows - 20).abs()).all()
    assert (20 - cols).max() >= 6  # a line, not a blob
    assert not all(torch.equal(out[0], o) for o in out[1:])  # each image has its own angle


def clipped_zoom(image: np.ndarray, factor: float) -> np.ndarray:
    """The reference helper, on H×W×C."""
    h = image.shape[0]
    ch = int(np.ceil(h / factor))
    top = (h - ch) // 2
    zoomed = ndimage.zoom(image[top:top + ch, top:top + ch], (factor, factor, 1), order=1)
    trim = (zoomed.shape[0] - h) // 2
    return zoomed[trim:trim + h, trim:trim + h]


@pytest.mark.parametrize(("severity", "end"), [(1, 1.06), (4, 1.21), (5, 1.26)])
def test_zoom_blur_is_the_reference_with_scipy_zoom(severity, end):
    images = natural(2, 3, 32, 32, seed=5)
    out = corrupt(images, "zoom_blur", severity, seed=0)
    for image, result in zip(images, out, strict=True):
        x = (hwc(image) / 255).astype(np.float32)
        factors = np.arange(1, end, 0.01)
        acc = x + sum(clipped_zoom(x, f) for f in factors)
        expected = np.clip(acc / (len(factors) + 1), 0, 1)
        assert np.abs(np.round(expected * 255) - hwc(result)).max() <= 1


# /////////////// digital ///////////////

@pytest.mark.parametrize(("channels", "h", "w"), [(3, 32, 32), (1, 8, 12), (3, 20, 28)])
def test_pixelate_is_pillow_box_down_and_up(channels, h, w):
    images = natural(3, channels, h, w, seed=6)
    for severity, c in zip(SEVERITIES, (0.95, 0.9, 0.85, 0.75, 0.65), strict=True):
        out = corrupt(images, "pixelate", severity, seed=0)
        for image, result in zip(images, out, strict=True):
            pil = Image.fromarray(hwc(image).squeeze(-1) if channels == 1 else hwc(image))
            small = pil.resize((int(w * c), int(h * c)), Image.Resampling.BOX)
            expected = np.asarray(small.resize((w, h), Image.Resampling.BOX))
            assert np.array_equal(expected.reshape(h, w, channels), hwc(result))
            # constant on blocks: no more distinct rows / columns than the small image
            assert len(torch.unique_consecutive(result, dim=1)[0]) <= int(h * c)
            assert len(torch.unique_consecutive(result, dim=2)[0, 0]) <= int(w * c)


@pytest.mark.parametrize("channels", [1, 3])
def test_jpeg_compression_is_pillows_round_trip(channels):
    images = natural(3, channels, 32, 24, seed=7)
    for severity, quality in zip(SEVERITIES, (80, 65, 58, 50, 40), strict=True):
        out = corrupt(images, "jpeg_compression", severity, seed=0)
        for image, result in zip(images, out, strict=True):
            pixels = hwc(image).squeeze(-1) if channels == 1 else hwc(image)
            buffer = io.BytesIO()
            Image.fromarray(pixels).save(buffer, "JPEG", quality=quality)
            expected = np.asarray(Image.open(buffer)).reshape(32, 24, channels)
            assert np.array_equal(expected, hwc(result))


# /////////////// photometric ///////////////

def test_contrast_keeps_each_channel_mean_and_scales_deviations():
    images = natural(4, 3, 32, 32, seed=8)
    clean = images.double()
    for severity, c in zip(SEVERITIES, (0.75, 0.5, 0.4, 0.3, 0.15), strict=True):
        out = corrupt(images, "contrast", severity, seed=0).double()
        mean = clean.mean((2, 3), keepdim=True)
        assert torch.allclose(out.mean((2, 3), keepdim=True), mean, atol=0.5)
        assert torch.allclose(out, (clean - mean) * c + mean, atol=0.51)


def test_brightness_of_a_gray_image_adds_c():
    images = natural(4, 1, 16, 16, seed=9)
    images[0, 0, 0, :4] = torch.tensor([0, 1, 250, 255], dtype=torch.uint8)
    for severity, c in zip(SEVERITIES, (0.05, 0.1, 0.15, 0.2, 0.3), strict=True):
        out = corrupt(images, "brightness", severity, seed=0).int()
        expected = torch.round((images.double() / 255 + c).clamp(0, 1) * 255).int()
        assert (out - expected).abs().max() <= 1


def test_brightness_of_colour_raises_hsv_value():
    rng = np.random.default_rng(10)
    pixels = rng.integers(0, 256, (1, 3, 8, 8), dtype=np.uint8)
    pixels[0, :, 0, 0] = 0  # black turns gray c
    pixels[0, :, 0, 1] = (250, 10, 10)  # V saturates at 1
    out = corrupt(torch.from_numpy(pixels), "brightness", 5, seed=0)
    for r in range(8):
        for q in range(8):
            h, s, v = colorsys.rgb_to_hsv(*(pixels[0, :, r, q] / 255))
            expected = np.round(np.array(colorsys.hsv_to_rgb(h, s, min(v + 0.3, 1))) * 255)
            assert np.abs(expected - out[0, :, r, q].numpy()).max() <= 1
    assert out[0, :, 0, 0].tolist() == [76, 76, 76]  # 0.3 * 255 = 76.5, to even


# /////////////// errors ///////////////

def test_unknown_corruption_names_the_value_and_the_choices():
    images = natural(1, 3, 8, 8, seed=0)
    with pytest.raises(LifecycleError, match=r"'fogg'.*gaussian_noise, shot_noise"):
        corrupt(images, "fogg", 1, seed=0)
    with pytest.raises(LifecycleError, match="'snow'"):
        family("snow")


@pytest.mark.parametrize("severity", [0, 6, -1, 2.5, 1.0, True, "1"])
def test_bad_severity_names_the_value(severity):
    images = natural(1, 3, 8, 8, seed=0)
    with pytest.raises(LifecycleError, match=rf"severity {severity!r}.*1, 2, 3, 4, 5"):
        corrupt(images, "contrast", severity, seed=0)


@pytest.mark.parametrize("images", [torch.zeros((1, 3, 8, 8)),
                                    torch.zeros((1, 2, 8, 8), dtype=torch.uint8),
                                    torch.zeros((1, 3, 7, 8), dtype=torch.uint8),
                                    torch.zeros((3, 8, 8), dtype=torch.uint8)])
def test_images_must_be_a_uint8_batch(images):
    with pytest.raises(LifecycleError, match="uint8 tensor B×C×H×W"):
        corrupt(images, "contrast", 1, seed=0)
