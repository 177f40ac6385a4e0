"""An encoder trained on one data set made to read another's images: the first
convolution's input channels are converted (grayscale ↔ RGB), so nothing is retrained
from scratch and nothing the encoder learned is thrown away."""

from __future__ import annotations

import torch
from torch import nn

from model_lifecycle.errors import LifecycleError
from model_lifecycle.models.classifier import Classifier

# the weights of PIL's RGB -> L conversion, which ingest applies for ``channels: 1``
LUMA = torch.tensor([0.299, 0.587, 0.114])


@torch.no_grad()
def match_channels(model: Classifier, channels: int) -> str | None:
    """Convert ``model`` in place to take ``channels`` input channels; return a sentence
    saying what changed, or ``None`` when it already matched.

    The conversions are exact for the images the project makes: a grayscale image turned
    into RGB repeats its one channel three times (``ingest.channels: 3``), so

    - an RGB encoder reads a grayscale image as it would read that image repeated to
      RGB when its first convolution's kernels are summed over the input channels;
    - a grayscale encoder reads an RGB image as it would read the grayscale image the
      project makes of it (PIL's ``L`` mode: ITU-R 601-2 luma, 0.299 R + 0.587 G +
      0.114 B) when its one kernel is repeated over the three channels, weighted so.

    Hand-written: the change is one tensor operation on the first layer, and no library
    converts an arbitrary model's input channels.
    """
    before = model.spec["in_channels"]
    if before == channels:
        return None
    conv = next((m for m in model.encoder.modules() if isinstance(m, nn.Conv2d)), None)
    if conv is None or conv.in_channels != before or conv.groups != 1:
        raise LifecycleError(
            f"The pretrained encoder ({model.spec['arch']}) takes {before} channel(s) and its "
            f"first layer cannot be converted to {channels}: set ingest.channels: {before} "
            "so the images match it.")
    if channels == 1:
        weight = conv.weight.sum(1, keepdim=True)
    elif before == 1 and channels == 3:
        weight = conv.weight * LUMA.to(conv.weight).view(1, 3, 1, 1)
    else:
        raise LifecycleError(
            f"The pretrained encoder takes {before} channels and the images have "
            f"{channels}: only grayscale ↔ RGB is converted; set ingest.channels: {before}.")
    conv.weight = nn.Parameter(weight.contiguous(), requires_grad=conv.weight.requires_grad)
    conv.in_channels = channels
    model.spec["in_channels"] = channels
    return (f"first convolution converted from {before} to {channels} input channel(s) "
            f"({'kernels summed over RGB' if channels == 1 else 'kernel weighted by luma'})")
