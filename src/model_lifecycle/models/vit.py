"""A small Vision Transformer (Dosovitskiy et al. 2021, https://arxiv.org/abs/2010.11929)
for small images, built from torchvision's own ViT encoder.

Patch embedding (a strided convolution) and learned position embeddings, then
torchvision's pre-norm transformer blocks (``nn.MultiheadAttention`` + MLP) and the
final layer norm. No class token: the patch tokens are averaged (as in Beyer et al.
2022, "Better plain ViT baselines"), which lets the encoder end, like the CNNs, in a
B×D×h×w map that ``Encoder`` pools.
"""

from __future__ import annotations

import math

import torch
from torch import nn
from torchvision.models.vision_transformer import Encoder as TorchvisionEncoder

from model_lifecycle.errors import ImageSizeError, LifecycleError
from model_lifecycle.models.classifier import Encoder
from model_lifecycle.models.registry import register


@register("vit")
def vit(in_channels: int, image_size: int | list[int] = 32, patch_size: int | None = None,
        depth: int = 6, width: int = 192, heads: int = 3, mlp_dim: int = 384,
        dropout: float = 0.0, attention_dropout: float = 0.0) -> Encoder:
    """ViT at CIFAR scale: 4-pixel patches of 32-pixel images (64 tokens), 6 blocks of
    width 192 with 3 heads and an MLP of 384.

    ``image_size`` is one int (square) or ``[height, width]``; the pipelines fill it in
    from the images. ``patch_size`` null: 4 for images of 16 pixels or more, else 2
    (8×8 digits: 16 tokens of 2×2 pixels). The stages are the patch embedding, each
    block, and the final norm, so ``partial`` fine-tuning freezes whole blocks.
    """
    height, width_px = _size(image_size)
    patch = patch_size if patch_size is not None else (4 if min(height, width_px) >= 16 else 2)
    if patch < 1 or height % patch or width_px % patch:
        raise ImageSizeError(f"vit: images of {height}×{width_px} pixels do not divide into "
                             f"{patch}-pixel patches: set arch_kwargs.patch_size to a "
                             "divisor of both sides.")
    if width % heads:
        raise LifecycleError(f"vit: width {width} is not divisible by {heads} heads: fix "
                             "arch_kwargs.width or arch_kwargs.heads.")
    grid = (height // patch, width_px // patch)
    encoder = TorchvisionEncoder(grid[0] * grid[1], depth, heads, width, mlp_dim, dropout,
                                 attention_dropout)
    stages = [PatchEmbedding(in_channels, width, patch, grid, encoder.pos_embedding),
              *encoder.layers, TokensToMap(encoder.ln, grid)]
    return Encoder(stages, width)


class PatchEmbedding(nn.Module):
    """Images B×C×H×W → tokens B×N×D: non-overlapping patches, projected, plus position."""

    def __init__(self, in_channels: int, width: int, patch: int, grid: tuple[int, int],
                 pos_embedding: nn.Parameter) -> None:
        super().__init__()
        self.proj = nn.Conv2d(in_channels, width, patch, stride=patch)
        # torchvision's VisionTransformer initialises its patch projection this way
        fan_in = in_channels * patch * patch
        nn.init.trunc_normal_(self.proj.weight, std=math.sqrt(1 / fan_in))
        nn.init.zeros_(self.proj.bias)
        self.pos_embedding = pos_embedding  # 1×N×D, normal(std=0.02) from torchvision
        self.grid = grid

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        tokens = self.proj(x).flatten(2).transpose(1, 2)  # B×N×D
        # try/except rather than a shape test: torch.fx (INT8 quantization, batch-norm
        # folding) traces no Python branch on a shape, and a traced graph keeps no except
        try:
            return tokens + self.pos_embedding
        except RuntimeError:
            size = [self.proj.stride[i] * self.grid[i] for i in range(2)]
            raise LifecycleError(f"vit was built for {size[0]}×{size[1]} images but got "
                                 f"{x.shape[-2]}×{x.shape[-1]}: set arch_kwargs.image_size "
                                 "to the images' size.") from None


class TokensToMap(nn.Module):
    """Tokens B×N×D → layer norm → B×D×h×w, the map ``Encoder`` average-pools."""

    def __init__(self, norm: nn.LayerNorm, grid: tuple[int, int]) -> None:
        super().__init__()
        self.norm = norm
        self.grid = grid

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        return self.norm(tokens).transpose(1, 2).unflatten(2, self.grid)


def _size(image_size: int | list[int]) -> tuple[int, int]:
    sides = [image_size] * 2 if isinstance(image_size, int) else list(image_size)
    if len(sides) != 2 or not all(isinstance(s, int) and s > 0 for s in sides):
        raise LifecycleError(f"vit: image_size {image_size!r} must be one positive int or "
                             "[height, width]: fix arch_kwargs.image_size.")
    return sides[0], sides[1]
