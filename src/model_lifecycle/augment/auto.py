"""TrivialAugmentWide and RandAugment on whole batches, op and strength drawn per image.

The op tables (which ops, their magnitude ranges over 31 bins) are torchvision's
(``torchvision.transforms.TrivialAugmentWide`` / ``RandAugment``); the ops act on
float images in [0, 1]. Geometric ops of a step share one ``grid_sample``; every
colour op runs once on the images that drew it.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from model_lifecycle.augment import ops

OPS = ("identity", "shear_x", "shear_y", "translate_x", "translate_y", "rotate",
       "brightness", "color", "contrast", "sharpness", "posterize", "solarize",
       "auto_contrast", "equalize")
_GEOMETRIC = ("shear_x", "shear_y", "translate_x", "translate_y", "rotate")
_SIGNED = (*_GEOMETRIC, "brightness", "color", "contrast", "sharpness")
_BINS = 31


def magnitude_table(method: str, height: int, width: int) -> torch.Tensor:
    """len(OPS)×31 magnitudes: shear (tan), translate (pixels), rotate (degrees),
    enhance (factor − 1), posterize (bits kept), solarize (threshold in [0, 1])."""
    wide = method == "trivial_augment_wide"
    span = torch.linspace(0, 1, _BINS)
    steps = torch.arange(_BINS, dtype=torch.float32)
    enhance = span * (0.99 if wide else 0.9)
    table = {
        "shear_x": span * (0.99 if wide else 0.3),
        "shear_y": span * (0.99 if wide else 0.3),
        "translate_x": span * (32.0 if wide else 150 / 331 * width),
        "translate_y": span * (32.0 if wide else 150 / 331 * height),
        "rotate": span * (135.0 if wide else 30.0),
        "brightness": enhance, "color": enhance, "contrast": enhance, "sharpness": enhance,
        "posterize": 8 - (steps / ((_BINS - 1) / (6 if wide else 4))).round(),
        "solarize": 1 - span,
    }
    return torch.stack([table.get(op, torch.zeros(_BINS)) for op in OPS])


def auto_augment(x: torch.Tensor, method: str, num_ops: int, magnitude: int,
                 g: torch.Generator) -> torch.Tensor:
    """Apply TrivialAugmentWide (one op, random bin) or RandAugment (``num_ops`` ops at
    bin ``magnitude``) to each image of ``x`` independently."""
    n, _, h, w = x.shape
    table = magnitude_table(method, h, w)
    signed = torch.tensor([op in _SIGNED for op in OPS])
    steps = 1 if method == "trivial_augment_wide" else num_ops
    for _ in range(steps):
        op = torch.randint(0, len(OPS), (n,), generator=g)
        if method == "trivial_augment_wide":
            level = torch.randint(0, _BINS, (n,), generator=g)
        else:
            level = torch.full((n,), magnitude)
        sign = torch.where(torch.rand(n, generator=g) < 0.5, -1.0, 1.0)
        value = table[op, level] * torch.where(signed[op], sign, 1.0)
        x = _apply(x, op, value)
    return x


def _apply(x: torch.Tensor, op: torch.Tensor, value: torch.Tensor) -> torch.Tensor:
    out = x.clone()
    geometric = torch.zeros_like(op, dtype=torch.bool)
    for name in _GEOMETRIC:
        geometric |= op == OPS.index(name)
    if geometric.any():
        idx = geometric.nonzero().squeeze(1)
        theta = _geometry(op[idx], value[idx])  # on the CPU; warp moves it
        idx = idx.to(x.device)
        out[idx] = ops.warp(x[idx], theta, mode="nearest")
    on_device = value.to(x.device)  # op and value were drawn on the CPU
    for name, fn in _COLOUR.items():
        idx = (op == OPS.index(name)).nonzero().squeeze(1).to(x.device)
        if len(idx):
            out[idx] = fn(x[idx], on_device[idx])
    return out


def _geometry(op: torch.Tensor, value: torch.Tensor) -> torch.Tensor:
    """Output → input maps (centred pixels) for the geometric ops."""
    theta = ops.identity_affine(len(op))
    is_op = {name: op == OPS.index(name) for name in _GEOMETRIC}
    theta[is_op["shear_x"], 0, 1] = value[is_op["shear_x"]]
    theta[is_op["shear_y"], 1, 0] = value[is_op["shear_y"]]
    theta[is_op["translate_x"], 0, 2] = -value[is_op["translate_x"]]
    theta[is_op["translate_y"], 1, 2] = -value[is_op["translate_y"]]
    angle = torch.deg2rad(value[is_op["rotate"]])
    cos, sin = torch.cos(angle), torch.sin(angle)
    theta[is_op["rotate"], 0, 0], theta[is_op["rotate"], 0, 1] = cos, sin
    theta[is_op["rotate"], 1, 0], theta[is_op["rotate"], 1, 1] = -sin, cos
    return theta


def _sharpness(x: torch.Tensor, value: torch.Tensor) -> torch.Tensor:
    # PIL's SMOOTH kernel, borders left as they are (as PIL and torchvision do).
    c = x.shape[1]
    kernel = torch.ones(3, 3, dtype=x.dtype, device=x.device)
    kernel[1, 1] = 5
    kernel = (kernel / kernel.sum()).expand(c, 1, 3, 3)
    smooth = x.clone()
    smooth[..., 1:-1, 1:-1] = F.conv2d(x, kernel, groups=c)
    return ops.blend(x, smooth, 1 + value)


def _posterize(x: torch.Tensor, bits: torch.Tensor) -> torch.Tensor:
    keep = (0xFF << (8 - bits.to(torch.int32))) & 0xFF  # per image bit mask
    levels = (x * 255).round().to(torch.int32) & keep.view(-1, 1, 1, 1)
    return levels.to(x.dtype) / 255


def _solarize(x: torch.Tensor, threshold: torch.Tensor) -> torch.Tensor:
    return torch.where(x >= threshold.view(-1, 1, 1, 1), 1 - x, x)


def _auto_contrast(x: torch.Tensor, _value: torch.Tensor) -> torch.Tensor:
    low = x.amin(dim=(2, 3), keepdim=True)
    high = x.amax(dim=(2, 3), keepdim=True)
    span = high - low
    return torch.where(span > 0, (x - low) / span.clamp(min=1e-8), x)


def _equalize(x: torch.Tensor, _value: torch.Tensor) -> torch.Tensor:
    # torchvision's equalize is batched (one histogram per image and channel); imported
    # here, as in augmenter.py, so that a process that never equalizes skips torchvision
    from torchvision.transforms.v2 import functional as TF  # noqa: N812, PLC0415

    as_uint8 = (x * 255).round().to(torch.uint8)
    return TF.equalize(as_uint8).to(x.dtype) / 255


_COLOUR = {
    "brightness": lambda x, v: ops.adjust_brightness(x, 1 + v),
    "color": lambda x, v: ops.adjust_saturation(x, 1 + v),
    "contrast": lambda x, v: ops.adjust_contrast(x, 1 + v),
    "sharpness": _sharpness,
    "posterize": _posterize,
    "solarize": _solarize,
    "auto_contrast": _auto_contrast,
    "equalize": _equalize,
}
