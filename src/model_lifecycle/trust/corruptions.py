"""The common corruptions of CIFAR-10-C, generated here as seeded, batched torch ops.

Hendrycks & Dietterich, "Benchmarking Neural Network Robustness to Common Corruptions and
Perturbations" (ICLR 2019). The five severity parameters of every corruption are those of
the reference generator ``hendrycks/robustness``, ``ImageNet-C/create_c/make_cifar_c.py``
(the 32-pixel ones); the script itself is not ported because it needs ImageMagick (Wand),
OpenCV, frost photographs and NumPy / scikit-image APIs that no longer exist. Each
operation below is re-derived from what those libraries compute:

* noise — gaussian, shot (Poisson), impulse (salt and pepper, scikit-image's per-element
  ``random_noise(mode="s&p")``), speckle;
* blur — gaussian (scikit-image ``gaussian``: SciPy kernel of radius ``int(4σ + 0.5)``,
  edge-replicating border), defocus (OpenCV: aliased disk smoothed by a 3×3 Gaussian,
  correlated with a reflect-101 border), motion (ImageMagick ``MotionBlurImage``: one-sided
  Gaussian-weighted line of ``2⌈radius⌉ + 1`` taps at integer-rounded offsets, edge
  border, angle uniform in [−45°, 45°) per image), zoom (SciPy linear ``zoom`` of the
  centre crop, as ``clipped_zoom``);
* digital — pixelate (Pillow BOX down then BOX up, incl. its 8-bit rounding between the
  passes), jpeg_compression (Pillow's own JPEG round trip, one image at a time);
* photometric — brightness (HSV value + c; with hue and saturation fixed RGB is
  proportional to V, so no colour-space round trip is needed), contrast.

Left out: the weather corruptions (snow, frost, fog, spatter) need the frost photographs,
ImageMagick's motion-blurred snow layer, OpenCV's Canny/distance transforms and a
power-of-two plasma fractal — not reproducible faithfully without those assets and
libraries. ``saturate`` is left out because its reference parameters are not monotone in
strength (0.3 and 0.1 desaturate, 1.5…2.5 saturate), and ``glass_blur`` / ``elastic``
because they are sequential pixel swaps / OpenCV affine warps.

The severity parameters are applied in pixels as they are, whatever the image size: on
images larger than 32×32 the blurs and pixelation are relatively milder than CIFAR-10-C's.

Randomness never touches the global RNG. Image ``i`` of a call draws from its own
``torch.Generator`` seeded from ``(seed, name, severity, i)``, so the corruptions and
severities do not share noise, and ``corrupt(images[:k], ...)`` equals the first ``k``
images of ``corrupt(images, ...)``. Results are rounded to nearest (the reference
truncates with ``np.uint8``, a systematic half-level darkening not copied here).
"""

from __future__ import annotations

import hashlib
import io
import math
import numbers
from collections.abc import Callable
from functools import lru_cache
from typing import NamedTuple

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

from model_lifecycle.errors import LifecycleError

SEVERITIES = (1, 2, 3, 4, 5)
_MIN_SIDE = 8


class _Draws:
    """Per-image random draws: one generator, reseeded for image ``i`` of the call."""

    def __init__(self, seed: int, name: str, severity: int, count: int) -> None:
        self._key = (seed, name, severity)
        self._count = count
        self._generator = torch.Generator()

    def each(self, draw: Callable[[int, torch.Generator], torch.Tensor]) -> torch.Tensor:
        """Stack ``draw(i, generator)`` over the images; one ``draw`` call per image, so
        every draw of an image must happen inside it (reseeding restarts the stream)."""
        out = []
        for i in range(self._count):
            self._generator.manual_seed(_image_seed(*self._key, i))
            out.append(draw(i, self._generator))
        return torch.stack(out)


Function = Callable[[torch.Tensor, int, _Draws], torch.Tensor]


class Corruption(NamedTuple):
    """A registry entry: the family and ``function(x, severity, draws)`` on float [0, 1]."""

    family: str
    function: Function


def _image_seed(seed: int, name: str, severity: int, index: int) -> int:
    # a stable hash (Python's hash() of a str changes between processes)
    digest = hashlib.blake2b(f"{seed}/{name}/{severity}/{index}".encode(), digest_size=8)
    return int.from_bytes(digest.digest(), "little") & (2**63 - 1)


# /////////////// noise ///////////////

def _gaussian_noise(x: torch.Tensor, severity: int, draws: _Draws) -> torch.Tensor:
    c = (0.04, 0.06, 0.08, 0.09, 0.10)[severity - 1]
    noise = draws.each(lambda _, g: torch.randn(x.shape[1:], generator=g))
    return (x + c * noise).clamp(0, 1)


def _shot_noise(x: torch.Tensor, severity: int, draws: _Draws) -> torch.Tensor:
    c = (500, 250, 100, 75, 50)[severity - 1]
    counts = draws.each(lambda i, g: torch.poisson(x[i] * c, generator=g))
    return (counts / c).clamp(0, 1)


def _impulse_noise(x: torch.Tensor, severity: int, draws: _Draws) -> torch.Tensor:
    c = (0.01, 0.02, 0.03, 0.05, 0.07)[severity - 1]
    # scikit-image: each element flipped with probability c, then salt or pepper 50/50
    u = draws.each(lambda _, g: torch.rand((2, *x.shape[1:]), generator=g))
    flipped, salt = u[:, 0] < c, u[:, 1] < 0.5
    return torch.where(flipped, salt.to(x.dtype), x)


def _speckle_noise(x: torch.Tensor, severity: int, draws: _Draws) -> torch.Tensor:
    c = (0.06, 0.1, 0.12, 0.16, 0.2)[severity - 1]
    noise = draws.each(lambda _, g: torch.randn(x.shape[1:], generator=g))
    return (x + x * c * noise).clamp(0, 1)


# /////////////// blur ///////////////

def _filter(x: torch.Tensor, kernel: torch.Tensor, mode: str) -> torch.Tensor:
    """Correlate every channel with a 2-D ``kernel`` (odd sides), border ``mode``."""
    b, ch, h, w = x.shape
    ry, rx = kernel.shape[0] // 2, kernel.shape[1] // 2
    flat = F.pad(x.reshape(b * ch, 1, h, w), (rx, rx, ry, ry), mode=mode)
    return F.conv2d(flat, kernel[None, None]).reshape(b, ch, h, w)


@lru_cache
def _scipy_gaussian_1d(sigma: float) -> torch.Tensor:
    radius = int(4.0 * sigma + 0.5)  # scipy.ndimage's truncate=4 rule
    t = torch.arange(-radius, radius + 1, dtype=torch.float64)
    k = torch.exp(-0.5 * t**2 / sigma**2)
    return (k / k.sum()).float()


def _gaussian_blur(x: torch.Tensor, severity: int, draws: _Draws) -> torch.Tensor:
    c = (0.4, 0.6, 0.7, 0.8, 1.0)[severity - 1]
    k = _scipy_gaussian_1d(c)
    # separable; skimage.filters.gaussian defaults to mode="nearest" (edge replicate)
    x = _filter(x, k[None, :], "replicate")
    return _filter(x, k[:, None], "replicate").clamp(0, 1)


@lru_cache
def _disk(radius: float, alias_blur: float) -> torch.Tensor:
    """The reference ``disk`` (radius ≤ 8 branch), cropped to its non-zero support."""
    t = np.arange(-8, 8 + 1)
    xx, yy = np.meshgrid(t, t)
    aliased = ((xx**2 + yy**2) <= radius**2).astype(np.float64)
    aliased /= aliased.sum()
    # cv2.GaussianBlur(ksize=(3, 3), sigmaX=alias_blur): separable 3-tap Gaussian;
    # the disk's margin is all zeros, so the 17×17 border rule cannot matter
    g = np.exp(-0.5 * np.arange(-1, 2) ** 2 / alias_blur**2)
    g /= g.sum()
    padded = np.pad(aliased, 1)
    rows = sum(g[j] * padded[:, j:j + 17] for j in range(3))
    smooth = sum(g[i] * rows[i:i + 17, :] for i in range(3))
    keep = np.flatnonzero(smooth.sum(0) > 0)  # symmetric, so one range serves both axes
    lo, hi = keep.min(), keep.max() + 1
    return torch.from_numpy(smooth[lo:hi, lo:hi]).float()


def _defocus_blur(x: torch.Tensor, severity: int, draws: _Draws) -> torch.Tensor:
    radius, alias_blur = ((0.3, 0.4), (0.4, 0.5), (0.5, 0.6), (1, 0.2), (1.5, 0.1))[severity - 1]
    # cv2.filter2D's default border is BORDER_REFLECT_101 == torch's "reflect"
    return _filter(x, _disk(radius, alias_blur), "reflect").clamp(0, 1)


def _motion_kernel(radius: float, sigma: float) -> torch.Tensor:
    # ImageMagick: width = GetOptimalKernelWidth1D = 2*ceil(radius)+1 taps, weight
    # exp(-i²/2σ²) at distance i = 0 … width-1 along the angle, normalised
    width = int(2 * math.ceil(radius) + 1)
    i = torch.arange(width, dtype=torch.float64)
    k = torch.exp(-(i**2) / (2 * sigma**2))
    return k / k.sum()


def _motion_blur(x: torch.Tensor, severity: int, draws: _Draws) -> torch.Tensor:
    # make_cifar_c.py's values (the Tiny ImageNet script uses (10, 1) … (12, 3))
    radius, sigma = ((6, 1), (6, 1.5), (6, 2), (8, 2), (9, 2.5))[severity - 1]
    weights = _motion_kernel(radius, sigma)
    u = draws.each(lambda _, g: torch.rand((), generator=g, dtype=torch.float64))
    angle = torch.deg2rad(-45 + 90 * u)  # np.random.uniform(-45, 45)
    steps = torch.arange(len(weights), dtype=torch.float64)
    # offset = ceil(i·cos(a) - 0.5) columns, ceil(i·sin(a) - 0.5) rows (y points down)
    dx = torch.ceil(steps[None] * torch.cos(angle)[:, None] - 0.5).long()
    dy = torch.ceil(steps[None] * torch.sin(angle)[:, None] - 0.5).long()
    b, _, h, w = x.shape
    rows, cols = torch.arange(h), torch.arange(w)
    batch = torch.arange(b)[:, None, None]
    pixels = x.permute(0, 2, 3, 1)  # B×H×W×C, so one gather picks whole pixels
    out = torch.zeros_like(pixels)
    for i, weight in enumerate(weights.tolist()):
        # the edge virtual-pixel method: out-of-image reads clamp to the border
        r = (rows[None, :, None] + dy[:, i, None, None]).clamp(0, h - 1)
        q = (cols[None, None, :] + dx[:, i, None, None]).clamp(0, w - 1)
        out += weight * pixels[batch, r, q]
    return out.permute(0, 3, 1, 2).clamp(0, 1)


def _linear_zoom_matrix(size: int, factor: float) -> torch.Tensor:
    """``size×size`` matrix of the reference ``clipped_zoom`` along one axis: crop the
    centre ``ceil(size/factor)``, scipy ``zoom(order=1)`` (corner-aligned), trim the centre."""
    crop = int(np.ceil(size / factor))
    top = (size - crop) // 2
    zoomed = int(round(crop * factor))
    step = (crop - 1) / (zoomed - 1) if zoomed > 1 else 1.0
    m = torch.zeros(zoomed, size, dtype=torch.float64)
    for o in range(zoomed):
        at = o * step
        lo = min(int(math.floor(at)), crop - 1)
        frac = at - lo
        m[o, top + lo] += 1 - frac
        if frac > 0:
            m[o, top + lo + 1] += frac
    trim = (zoomed - size) // 2
    return m[trim:trim + size]


@lru_cache
def _zoom_matrices(size: int, severity: int) -> torch.Tensor:
    top = (1.06, 1.11, 1.16, 1.21, 1.26)[severity - 1]
    # np.arange as in the reference: its float end gives 7, 12, 16, 21 and 26 factors
    factors = np.arange(1, top, 0.01)
    return torch.stack([_linear_zoom_matrix(size, float(f)) for f in factors]).float()


def _zoom_blur(x: torch.Tensor, severity: int, draws: _Draws) -> torch.Tensor:
    mh = _zoom_matrices(x.shape[2], severity)
    mw = _zoom_matrices(x.shape[3], severity)
    out = x.clone()
    for zh, zw in zip(mh, mw, strict=True):
        out += zh @ x @ zw.T
    return (out / (len(mh) + 1)).clamp(0, 1)


# /////////////// digital ///////////////

@lru_cache
def _pil_box_matrix(size_in: int, size_out: int) -> torch.Tensor:
    """Pillow's BOX resampling coefficients (``precompute_coeffs``): input pixels whose
    centres fall in the output pixel's support, equal weights."""
    scale = size_in / size_out
    support = 0.5 * max(scale, 1.0)
    m = torch.zeros(size_out, size_in, dtype=torch.float64)
    for o in range(size_out):
        centre = (o + 0.5) * scale
        lo = max(int(centre - support + 0.5), 0)
        hi = min(int(centre + support + 0.5), size_in)
        for j in range(lo, hi):
            arg = (j - centre + 0.5) / max(scale, 1.0)
            m[o, j] = 1.0 if -0.5 < arg <= 0.5 else 0.0
    return (m / m.sum(1, keepdim=True)).float()


def _round_half_up(v: torch.Tensor) -> torch.Tensor:
    # Pillow's 8-bit fixed point adds half and truncates
    return torch.floor(v + 0.5).clamp(0, 255)


def _pil_box_resize(v: torch.Tensor, h: int, w: int) -> torch.Tensor:
    """Pillow ``resize(BOX)`` of 8-bit levels: horizontal pass, 8-bit image, vertical pass."""
    v = _round_half_up(v @ _pil_box_matrix(v.shape[3], w).T)
    return _round_half_up(_pil_box_matrix(v.shape[2], h) @ v)


def _pixelate(x: torch.Tensor, severity: int, draws: _Draws) -> torch.Tensor:
    c = (0.95, 0.9, 0.85, 0.75, 0.65)[severity - 1]
    h, w = x.shape[2:]
    levels = torch.round(x * 255)
    small = _pil_box_resize(levels, int(h * c), int(w * c))
    return _pil_box_resize(small, h, w) / 255


def _jpeg_compression(x: torch.Tensor, severity: int, draws: _Draws) -> torch.Tensor:
    quality = (80, 65, 58, 50, 40)[severity - 1]
    levels = torch.round(x * 255).to(torch.uint8).permute(0, 2, 3, 1).numpy()
    out = np.empty_like(levels)
    for i, pixels in enumerate(levels):
        buffer = io.BytesIO()
        image = Image.fromarray(pixels[..., 0] if pixels.shape[2] == 1 else pixels)
        image.save(buffer, "JPEG", quality=quality)
        decoded = np.asarray(Image.open(buffer))
        out[i] = decoded.reshape(pixels.shape)
    return torch.from_numpy(out).permute(0, 3, 1, 2).float() / 255


# /////////////// photometric ///////////////

def _brightness(x: torch.Tensor, severity: int, draws: _Draws) -> torch.Tensor:
    c = (0.05, 0.1, 0.15, 0.2, 0.3)[severity - 1]
    # HSV V = max channel; with H and S fixed RGB scales with V. A black pixel has
    # S = 0 in rgb2hsv, so it turns gray c.
    v = x.amax(1, keepdim=True)
    scaled = x * (v + c).clamp(max=1) / v.clamp_min(1e-12)
    return torch.where(v > 0, scaled, torch.full_like(x, c)).clamp(0, 1)


def _contrast(x: torch.Tensor, severity: int, draws: _Draws) -> torch.Tensor:
    c = (0.75, 0.5, 0.4, 0.3, 0.15)[severity - 1]
    mean = x.mean((2, 3), keepdim=True)
    return ((x - mean) * c + mean).clamp(0, 1)


CORRUPTIONS: dict[str, Corruption] = {
    "gaussian_noise": Corruption("noise", _gaussian_noise),
    "shot_noise": Corruption("noise", _shot_noise),
    "impulse_noise": Corruption("noise", _impulse_noise),
    "speckle_noise": Corruption("noise", _speckle_noise),
    "gaussian_blur": Corruption("blur", _gaussian_blur),
    "defocus_blur": Corruption("blur", _defocus_blur),
    "motion_blur": Corruption("blur", _motion_blur),
    "zoom_blur": Corruption("blur", _zoom_blur),
    "pixelate": Corruption("digital", _pixelate),
    "jpeg_compression": Corruption("digital", _jpeg_compression),
    "brightness": Corruption("photometric", _brightness),
    "contrast": Corruption("photometric", _contrast),
}


def corruption_names() -> tuple[str, ...]:
    """The corruption names, ordered noise, blur, digital, photometric."""
    return tuple(CORRUPTIONS)


def family(name: str) -> str:
    """``"noise"``, ``"blur"``, ``"digital"`` or ``"photometric"``."""
    return _entry(name).family


def _entry(name: str) -> Corruption:
    if name not in CORRUPTIONS:
        raise LifecycleError(f"Unknown corruption {name!r}: choose among "
                             f"{', '.join(CORRUPTIONS)}.")
    return CORRUPTIONS[name]


def _check_images(images: torch.Tensor) -> None:
    ok = (isinstance(images, torch.Tensor) and images.dtype == torch.uint8
          and images.ndim == 4 and images.shape[1] in (1, 3)
          and min(images.shape[2:]) >= _MIN_SIDE)
    if not ok:
        shape = tuple(images.shape) if isinstance(images, torch.Tensor) else type(images)
        dtype = images.dtype if isinstance(images, torch.Tensor) else None
        raise LifecycleError(f"Images to corrupt must be a uint8 tensor B×C×H×W with C 1 or 3 "
                             f"and H, W ≥ {_MIN_SIDE}, got {dtype} {shape}.")


def corrupt(images: torch.Tensor, name: str, severity: int, *, seed: int) -> torch.Tensor:
    """``images`` (uint8 B×C×H×W, C 1 or 3, H, W ≥ 8) with corruption ``name`` at
    ``severity`` 1…5, as a new uint8 CPU tensor of the same shape.

    Deterministic for ``seed``; image ``i`` gets noise keyed by ``(seed, name, severity,
    i)``, so a prefix of the batch corrupts the same way on its own.
    """
    entry = _entry(name)
    # bool is an int, and 1.0 == 1 would pass a plain `in`: ask for a true integer
    integral = isinstance(severity, numbers.Integral) and not isinstance(severity, bool)
    if not integral or severity not in SEVERITIES:
        raise LifecycleError(f"Unknown severity {severity!r} for {name!r}: choose among "
                             f"{', '.join(map(str, SEVERITIES))}.")
    _check_images(images)
    x = images.detach().cpu().float() / 255
    draws = _Draws(seed, name, int(severity), len(x))
    out = entry.function(x, int(severity), draws)
    return torch.round(out * 255).clamp(0, 255).to(torch.uint8)
