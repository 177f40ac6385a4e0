"""Initialisations that shorten training: a patch-whitening first convolution, and
later convolutions that start as partial identities."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from model_lifecycle.errors import LifecycleError


@torch.no_grad()
def whiten_first_conv(model: nn.Module, images: torch.Tensor, *, eps: float = 5e-4,
                      freeze: bool = True) -> nn.Conv2d:
    """Set the first convolution's filters to the principal directions of its input
    patches, each scaled by 1 / sqrt(variance + ``eps``), as a ± pair.

    This is the patch-whitening initialisation of Keller Jordan's airbench (2024,
    https://arxiv.org/abs/2404.00498), after Coates & Ng (2011): the first layer starts
    as a decorrelating filter bank of the data instead of noise, which shortens training.
    Hand-written because no library offers it for an arbitrary model; the eigen-
    decomposition is ``torch.linalg.eigh``.

    ``images``: a sample of training images, B×C×H×W float in [0, 1] (a few thousand is
    plenty). The patches are what the convolution really sees (captured with a forward
    pre-hook), so any preprocessing in front of it is respected. The layer gets
    2·k filters for the k = min(out_channels // 2, patch size) strongest directions; any
    further filters keep their initialisation. ``freeze`` stops the filters training.

        conv = whiten_first_conv(model, torch.rand(2000, 3, 32, 32))
    """
    conv = next((m for m in model.modules() if isinstance(m, nn.Conv2d)), None)
    if conv is None or conv.groups != 1:
        raise LifecycleError(f"{type(model).__name__} has no plain first convolution to "
                             "whiten: set finetune.whiten_stem: false for this arch.")
    dims = conv.weight[0].numel()  # C·kh·kw values per patch
    moments = {"n": 0, "sum": torch.zeros(dims, dtype=torch.float64),
               "outer": torch.zeros(dims, dims, dtype=torch.float64)}

    def accumulate(_module: nn.Module, args: tuple[torch.Tensor, ...]) -> None:
        patches = F.unfold(args[0].double(), conv.kernel_size, dilation=conv.dilation,
                           stride=conv.stride).transpose(1, 2).reshape(-1, dims).cpu()
        moments["n"] += len(patches)
        moments["sum"] += patches.sum(0)
        moments["outer"] += patches.T @ patches

    hook = conv.register_forward_pre_hook(accumulate)
    was_training = model.training
    try:
        model.eval()
        for chunk in images.to(conv.weight.device).float().split(256):
            model(chunk)
    finally:
        hook.remove()
        model.train(was_training)
    mean = moments["sum"] / moments["n"]
    covariance = moments["outer"] / moments["n"] - torch.outer(mean, mean)
    variances, directions = torch.linalg.eigh(covariance)  # ascending
    k = min(conv.out_channels // 2, len(variances))
    top = (directions[:, -k:] / (variances[-k:].clamp_min(0) + eps).sqrt()).flip(1).T
    filters = torch.cat([top, -top]).reshape(2 * k, *conv.weight.shape[1:])
    conv.weight[:2 * k] = filters.to(conv.weight.dtype)
    if conv.bias is not None:
        conv.bias[:2 * k] = 0
    conv.weight.requires_grad_(not freeze)
    return conv


@torch.no_grad()
def dirac_convs(model: nn.Module) -> int:
    """Partial identity initialisation: every convolution after the first (plain, odd
    square kernel) gets its first min(in, out) filters set to pass the matching input
    channel straight through (``torch.nn.init.dirac_``); the other filters keep their
    initialisation. From airbench (Jordan 2024), where it cuts the epochs needed by
    about a fifth: each block starts close to the identity, so depth costs less early on.

    Returns the number of convolutions changed.
    """
    convs = [m for m in model.modules() if isinstance(m, nn.Conv2d)][1:]
    changed = 0
    for conv in convs:
        kh, kw = conv.kernel_size
        if conv.groups != 1 or kh != kw or kh % 2 == 0:
            continue
        nn.init.dirac_(conv.weight[:min(conv.in_channels, conv.out_channels)])
        changed += 1
    return changed
