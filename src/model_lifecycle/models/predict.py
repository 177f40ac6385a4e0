"""Model outputs and accuracy on images of the uint8 array, in memory or memory-mapped
(eval mode, optional test-time augmentation). Used by training, compression, evaluation
and the SSL probes."""

from __future__ import annotations

import numpy as np
import torch

from model_lifecycle.errors import LifecycleError

# Images per forward pass when none is given. On a CPU a batch whose activations stay in
# the caches is faster than a large one: the CIFAR-10 float models ran 1.3-1.6x faster
# at 128 than at 512 (benchmarks/predict_batch.py); an accelerator wants large batches.
CPU_BATCH, ACCELERATOR_BATCH = 128, 512


@torch.no_grad()
def predict(model: torch.nn.Module, images: np.ndarray, indices: np.ndarray, *,
            batch_size: int | None = None, device: torch.device | None = None,
            flip_tta: bool = False, shift_tta: int = 0) -> torch.Tensor:
    """Model outputs for ``images[indices]`` (eval mode, no augmentation), on the CPU.
    ``batch_size``: images per forward pass (default: ``CPU_BATCH`` on the CPU,
    ``ACCELERATOR_BATCH`` elsewhere).

    ``flip_tta`` averages the outputs of each image and its mirror image. ``shift_tta``
    (pixels) also averages in copies shifted diagonally by ± that many pixels
    (reflect-padded), half the weight on the unshifted outputs and half on the shifted
    ones, as airbench's test-time augmentation does.
    """
    if device is None:  # a quantized model has no parameters: it runs on the CPU
        first = next(iter(model.parameters()), None)
        device = first.device if first is not None else torch.device("cpu")
    if batch_size is None:
        batch_size = CPU_BATCH if device.type == "cpu" else ACCELERATOR_BATCH
    was_training = model.training
    model.eval()
    outputs = []
    for start in range(0, len(indices), batch_size):
        # one batch read at a time (a memory map pages in only these images)
        batch = torch.from_numpy(images[np.asarray(indices[start:start + batch_size])])
        x = batch.to(device).float().div_(255)
        views = [x, x.flip(-1)] if flip_tta else [x]
        out = torch.stack([model(v) for v in views]).mean(0)
        if shift_tta:
            shifted = [_shift(v, d) for v in views for d in (-shift_tta, shift_tta)]
            out = (out + torch.stack([model(v) for v in shifted]).mean(0)) / 2
        outputs.append(out.float().cpu())
    model.train(was_training)
    if not outputs:
        return torch.empty(0)
    return torch.cat(outputs)


def _shift(x: torch.Tensor, pixels: int) -> torch.Tensor:
    """``x`` moved by ``pixels`` down and right (up and left if negative), the uncovered
    border filled by reflection."""
    p = abs(pixels)
    if p >= min(x.shape[-2:]):
        raise LifecycleError(f"finetune.shift_tta is {p} pixels but the images are "
                             f"{x.shape[-2]}×{x.shape[-1]}: set it below {min(x.shape[-2:])}.")
    padded = torch.nn.functional.pad(x, (p, p, p, p), mode="reflect")
    start = p - pixels
    return padded[..., start:start + x.shape[-2], start:start + x.shape[-1]]


def accuracy(model: torch.nn.Module, images: np.ndarray, labels: np.ndarray,
             indices: np.ndarray, *, flip_tta: bool = False, shift_tta: int = 0) -> float:
    """Top-1 accuracy of ``model`` on ``images[indices]`` (NaN for no images)."""
    if len(indices) == 0:
        return float("nan")
    logits = predict(model, images, indices, flip_tta=flip_tta, shift_tta=shift_tta)
    return float((logits.argmax(1).numpy() == labels[indices]).mean())
