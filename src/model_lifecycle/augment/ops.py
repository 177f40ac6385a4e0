"""Augmentations on whole batches, with random parameters drawn per image.

Why hand-written: torchvision.transforms.v2 draws one set of random parameters
per call, so on a batch every image gets the same crop, flip and jitter; per-image
randomness through it means a Python loop over images, the slow path this module
replaces. Kornia draws per image but ran its SimCLR policy at ~2.5k images/s on
2 CPU cores, slower than PIL in a DataLoader. Here each transform is a few
vectorised tensor ops over the whole batch, and every geometric transform of a
view is fused into one ``grid_sample``.

All functions take float images in [0, 1], shaped B×C×H×W, and a
``torch.Generator`` so that a seed reproduces the exact views. The generator is a CPU
one wherever the images live: random parameters are drawn on the CPU (a few numbers
per image) and moved to the images' device, so a batch on a GPU gets the same draws as
on the CPU.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

# ITU-R 601 luma, as PIL and torchvision use for grayscale.
_LUMA = (0.299, 0.587, 0.114)
# RGB <-> YIQ. Hue is a rotation of the (I, Q) chroma plane: one 3×3 matrix per image,
# the same linear approximation of an HSV hue shift that NVIDIA DALI uses.
_RGB_TO_YIQ = torch.tensor([[0.299, 0.587, 0.114],
                            [0.596, -0.274, -0.322],
                            [0.211, -0.523, 0.312]])
_YIQ_TO_RGB = torch.linalg.inv(_RGB_TO_YIQ)


def uniform(low: float, high: float, n: int, g: torch.Generator) -> torch.Tensor:
    """``n`` samples from U(low, high)."""
    return low + (high - low) * torch.rand(n, generator=g)


def bernoulli(p: float, n: int, g: torch.Generator) -> torch.Tensor:
    """``n`` booleans, each True with probability ``p``."""
    return torch.rand(n, generator=g) < p


def _per_image(values: torch.Tensor) -> torch.Tensor:
    return values.view(-1, 1, 1, 1)


# --- geometry -----------------------------------------------------------------------

def identity_affine(n: int) -> torch.Tensor:
    """``n`` identity maps, n×2×3, in pixel units centred on the image (output → input)."""
    return torch.eye(2, 3).repeat(n, 1, 1)


def resized_crop_affine(n: int, height: int, width: int, scale: tuple[float, float],
                        ratio: tuple[float, float], g: torch.Generator) -> torch.Tensor:
    """Random crops of area ``scale`` and aspect ``ratio`` (torchvision's RandomResizedCrop
    distribution, without its rejection loop: sides are clipped to the image instead)."""
    area = uniform(*scale, n, g)
    log_ratio = uniform(math.log(ratio[0]), math.log(ratio[1]), n, g)
    aspect = torch.exp(log_ratio)  # crop width / height, in pixels
    crop_w = torch.sqrt(area * aspect * height / width).clamp(max=1.0)  # fraction of width
    crop_h = torch.sqrt(area / aspect * width / height).clamp(max=1.0)
    centre_x = (1 - crop_w) * uniform(-1, 1, n, g) * width / 2  # pixels from the centre
    centre_y = (1 - crop_h) * uniform(-1, 1, n, g) * height / 2
    theta = torch.zeros(n, 2, 3)
    theta[:, 0, 0], theta[:, 1, 1] = crop_w, crop_h
    theta[:, 0, 2], theta[:, 1, 2] = centre_x, centre_y
    return theta


def flip_affine(theta: torch.Tensor, p: float, g: torch.Generator,
                flip: torch.Tensor | None = None) -> torch.Tensor:
    """Compose a horizontal flip (probability ``p``, or where the boolean ``flip`` says)
    before the sampling map ``theta``."""
    flip = bernoulli(p, len(theta), g) if flip is None else flip.cpu()
    theta = theta.clone()
    theta[flip, :, 0] = -theta[flip, :, 0]
    return theta


def warp(x: torch.Tensor, theta_px: torch.Tensor, *, mode: str = "bilinear") -> torch.Tensor:
    """Sample ``x`` through per-image affine maps given in centred pixel units.

    ``theta_px`` maps output pixel offsets from the centre to input offsets; it is
    converted to the normalised coordinates ``affine_grid`` expects, so rotations
    stay rotations on non-square images. Pixels from outside the image are zero.
    """
    b, _, h, w = x.shape
    half = torch.tensor([w / 2, h / 2], device=x.device)
    theta_px = theta_px.to(x.device)
    theta = theta_px.clone()
    theta[:, :, :2] = theta_px[:, :, :2] * half[None, None, :] / half[None, :, None]
    theta[:, :, 2] = theta_px[:, :, 2] / half
    grid = F.affine_grid(theta, [b, 1, h, w], align_corners=False)
    return F.grid_sample(x, grid.to(x.dtype), mode=mode, padding_mode="zeros",
                         align_corners=False)


def random_crop(x: torch.Tensor, padding: int, g: torch.Generator) -> torch.Tensor:
    """Zero-pad by ``padding`` and crop back at a random integer offset (exact, no resampling)."""
    b, _, h, w = x.shape
    padded = F.pad(x, (padding, padding, padding, padding))
    dy = torch.randint(0, 2 * padding + 1, (b,), generator=g).to(x.device)
    dx = torch.randint(0, 2 * padding + 1, (b,), generator=g).to(x.device)
    windows = padded.unfold(2, h, 1).unfold(3, w, 1)  # B×C×dy×dx×H×W, a view
    return windows[torch.arange(b, device=x.device), :, dy, dx]  # B×C×H×W


def horizontal_flip(x: torch.Tensor, p: float, g: torch.Generator,
                    flip: torch.Tensor | None = None) -> torch.Tensor:
    """Mirror each image with probability ``p`` (or where the boolean ``flip`` says)."""
    flip = bernoulli(p, len(x), g) if flip is None else flip
    return torch.where(_per_image(flip).to(x.device), x.flip(-1), x)


# --- colour -------------------------------------------------------------------------

def grayscale(x: torch.Tensor) -> torch.Tensor:
    """Luma, B×1×H×W (a 1-channel input is returned as is)."""
    if x.shape[1] == 1:
        return x
    weights = torch.tensor(_LUMA, dtype=x.dtype, device=x.device).view(1, 3, 1, 1)
    return (x * weights).sum(1, keepdim=True)


def blend(x: torch.Tensor, other: torch.Tensor, factor: torch.Tensor) -> torch.Tensor:
    """``other + factor·(x − other)`` per image, clamped to [0, 1] (PIL's ImageEnhance rule)."""
    return (other + _per_image(factor) * (x - other)).clamp_(0, 1)


def adjust_brightness(x: torch.Tensor, factor: torch.Tensor) -> torch.Tensor:
    return (x * _per_image(factor)).clamp_(0, 1)


def adjust_contrast(x: torch.Tensor, factor: torch.Tensor) -> torch.Tensor:
    mean = grayscale(x).mean(dim=(1, 2, 3), keepdim=True)
    return blend(x, mean, factor)


def adjust_saturation(x: torch.Tensor, factor: torch.Tensor) -> torch.Tensor:
    return x if x.shape[1] == 1 else blend(x, grayscale(x), factor)


def adjust_hue(x: torch.Tensor, turns: torch.Tensor) -> torch.Tensor:
    """Rotate hue by ``turns`` (−0.5 … 0.5) per image."""
    if x.shape[1] == 1:
        return x
    matrix = _hue_matrix(turns.cpu()).to(x.device, x.dtype)
    return torch.einsum("bij,bjhw->bihw", matrix, x).clamp_(0, 1)


def color_jitter(x: torch.Tensor, brightness: float, contrast: float, saturation: float,
                 hue: float, p: float, g: torch.Generator) -> torch.Tensor:
    """Brightness, contrast, saturation then hue, each factor drawn per image; the whole
    jitter applies to a share ``p`` of the images.

    All four are linear in the pixels, so they compose into one per-image 3×3 colour
    matrix and offset, applied in a single batched matmul and clamped once (torchvision
    clamps after each step and shuffles their order; the distribution of factors is
    the same).
    """
    n, c, h, w = x.shape
    apply = bernoulli(p, n, g)
    b = _factor(brightness, apply, g)
    k = _factor(contrast, apply, g)
    s = _factor(saturation, apply, g)
    turns = torch.where(apply, uniform(-hue, hue, n, g), 0.0)
    mean_luma = grayscale(x).mean(dim=(1, 2, 3))  # contrast blends towards this grey
    offset = ((1 - k) * b).to(x.device) * mean_luma  # grey is a fixed point of sat. and hue
    if c == 1:
        scale = (k * b).view(n, 1, 1, 1).to(x.device)
        return (x * scale + offset.view(n, 1, 1, 1)).clamp_(0, 1)
    luma = torch.tensor(_LUMA).expand(3, 3)  # each row maps a pixel to its grey
    sat = s.view(n, 1, 1) * torch.eye(3) + (1 - s).view(n, 1, 1) * luma
    matrix = (k * b).view(n, 1, 1) * (_hue_matrix(turns) @ sat)  # B×3×3
    out = torch.baddbmm(offset.view(n, 1, 1).expand(n, 3, 1).to(x.dtype),
                        matrix.to(x.device, x.dtype), x.reshape(n, 3, h * w))
    return out.view(n, c, h, w).clamp_(0, 1)


def _hue_matrix(turns: torch.Tensor) -> torch.Tensor:
    """Per-image RGB→RGB hue rotation by ``turns``, B×3×3."""
    angle = turns * 2 * math.pi
    cos, sin = torch.cos(angle), torch.sin(angle)
    rotation = torch.zeros(len(turns), 3, 3)
    rotation[:, 0, 0] = 1
    rotation[:, 1, 1], rotation[:, 1, 2] = cos, -sin
    rotation[:, 2, 1], rotation[:, 2, 2] = sin, cos
    return _YIQ_TO_RGB @ rotation @ _RGB_TO_YIQ


def _factor(strength: float, apply: torch.Tensor, g: torch.Generator) -> torch.Tensor:
    factor = uniform(max(0.0, 1 - strength), 1 + strength, len(apply), g)
    return torch.where(apply, factor, 1.0)


def random_grayscale(x: torch.Tensor, p: float, g: torch.Generator) -> torch.Tensor:
    if x.shape[1] == 1:
        return x
    apply = _per_image(bernoulli(p, len(x), g)).to(x.device)
    return torch.where(apply, grayscale(x).expand_as(x), x)


def gaussian_blur(x: torch.Tensor, sigma: tuple[float, float], p: float,
                  g: torch.Generator) -> torch.Tensor:
    """Separable Gaussian blur, sigma (pixels) drawn per image; kernel ≈ 10% of the side
    (SimCLR's choice), odd, at least 3."""
    b, c, h, w = x.shape
    size = max(3, int(0.1 * min(h, w)) // 2 * 2 + 1)
    apply = bernoulli(p, b, g)
    sigmas = uniform(*sigma, b, g)
    offsets = torch.arange(size, dtype=x.dtype) - size // 2
    kernels = torch.exp(-0.5 * (offsets[None, :] / sigmas[:, None]) ** 2)
    kernels = kernels / kernels.sum(1, keepdim=True)  # B×K
    kernels = torch.where(apply[:, None], kernels, (offsets == 0).to(x.dtype))
    kernels = kernels.repeat_interleave(c, dim=0).to(x.device)  # (B·C)×K: one per plane
    planes = F.pad(x.reshape(1, b * c, h, w), (size // 2,) * 4, mode="reflect")
    planes = F.conv2d(planes, kernels.view(b * c, 1, 1, size), groups=b * c)
    planes = F.conv2d(planes, kernels.view(b * c, 1, size, 1), groups=b * c)
    return planes.view(b, c, h, w)


def random_erasing(x: torch.Tensor, scale: tuple[float, float], ratio: tuple[float, float],
                   p: float, g: torch.Generator) -> torch.Tensor:
    """Zhong et al. 2017: a random rectangle per image replaced by uniform noise."""
    b, c, h, w = x.shape
    chosen = bernoulli(p, b, g).nonzero().squeeze(1)
    n = len(chosen)
    area = uniform(*scale, n, g) * h * w
    aspect = torch.exp(uniform(math.log(ratio[0]), math.log(ratio[1]), n, g))
    eh = torch.sqrt(area / aspect).round().clamp(1, h)
    ew = torch.sqrt(area * aspect).round().clamp(1, w)
    top = (torch.rand(n, generator=g) * (h - eh + 1)).floor()
    left = (torch.rand(n, generator=g) * (w - ew + 1)).floor()
    rows = torch.arange(h)[None, :]
    cols = torch.arange(w)[None, :]
    in_rows = (rows >= top[:, None]) & (rows < (top + eh)[:, None])  # n×H
    in_cols = (cols >= left[:, None]) & (cols < (left + ew)[:, None])  # n×W
    mask = (in_rows[:, :, None] & in_cols[:, None, :])[:, None]  # n×1×H×W
    noise = torch.rand((n, c, h, w), generator=g, dtype=x.dtype).to(x.device)
    chosen = chosen.to(x.device)
    out = x.clone()
    out[chosen] = torch.where(mask.to(x.device), noise, x[chosen])  # only the chosen pay
    return out
