"""Turn a :class:`ViewPolicy` into one callable over uint8 batches, plus label mixing."""

from __future__ import annotations

import torch

from model_lifecycle.augment import ops
from model_lifecycle.augment.auto import auto_augment
from model_lifecycle.augment.config import SupervisedPolicy, ViewPolicy


class BatchAugmenter:
    """Augment a whole batch at once, random parameters drawn per image.

    Usage::

        augment = BatchAugmenter(policy)
        views = augment(images_uint8, generator)  # B×C×H×W float32 in [0, 1]

    The output keeps the input size; normalisation is the model's business. ``flip``
    (B booleans) fixes which images are mirrored, for a caller that alternates flips
    across epochs (:attr:`alternating_flip`); without it the flips are drawn.
    """

    def __init__(self, policy: ViewPolicy) -> None:
        self.policy = policy

    @property
    def alternating_flip(self) -> bool:
        """Whether the policy asks the training stream to alternate each image's flip."""
        flip = self.policy.horizontal_flip
        return flip is not None and flip.alternate and flip.p > 0

    def epoch_flips(self, count: int, seed: int, epoch: int) -> torch.Tensor:
        """Alternating flips of ``count`` training images in ``epoch``: each image's flip
        of epoch 0 drawn once from ``seed`` (probability ``p``), reversed in odd epochs."""
        first = torch.Generator().manual_seed(seed * 100_003 + 99_991)
        flips = ops.bernoulli(self.policy.horizontal_flip.p, count, first)
        return flips ^ bool(epoch % 2)

    def __call__(self, images: torch.Tensor, generator: torch.Generator,
                 flip: torch.Tensor | None = None) -> torch.Tensor:
        if images.dtype != torch.uint8 or images.ndim != 4:
            raise ValueError(f"expected uint8 B×C×H×W images, got {images.dtype} "
                             f"with shape {tuple(images.shape)}")
        p, g = self.policy, generator
        x = images.float().div_(255)
        x = self._geometry(x, g, flip)
        if p.auto_augment is not None:
            a = p.auto_augment
            x = auto_augment(x, a.method, a.num_ops, a.magnitude, g)
        if p.color_jitter is not None:
            j = p.color_jitter
            x = ops.color_jitter(x, j.brightness, j.contrast, j.saturation, j.hue, j.p, g)
        if p.grayscale is not None:
            x = ops.random_grayscale(x, p.grayscale.p, g)
        if p.gaussian_blur is not None:
            x = ops.gaussian_blur(x, p.gaussian_blur.sigma, p.gaussian_blur.p, g)
        if p.random_erasing is not None:
            e = p.random_erasing
            x = ops.random_erasing(x, e.scale, e.ratio, e.p, g)
        return x.clamp_(0, 1)  # resampling and blurring can overshoot by rounding

    def _geometry(self, x: torch.Tensor, g: torch.Generator, flip: torch.Tensor | None
                  ) -> torch.Tensor:
        p = self.policy
        flip_p = p.horizontal_flip.p if p.horizontal_flip is not None else 0.0
        if flip_p == 0:
            flip = None
        if p.random_resized_crop is not None:
            # crop and flip fused into one resampling pass
            b, _, h, w = x.shape
            crop = p.random_resized_crop
            theta = ops.resized_crop_affine(b, h, w, crop.scale, crop.ratio, g)
            return ops.warp(x, ops.flip_affine(theta, flip_p, g, flip))
        if p.random_crop is not None:
            x = ops.random_crop(x, p.random_crop.padding, g)
        if flip_p > 0:
            x = ops.horizontal_flip(x, flip_p, g, flip)
        return x


class LabelMixer:
    """MixUp / CutMix on a batch (torchvision.transforms.v2), for supervised training.

    Returns images and soft labels (B×num_classes). With both configured, each batch
    uses one of the two at random; a share ``1 - mix_p`` of batches is left unmixed
    (labels still one-hot).
    """

    def __init__(self, policy: SupervisedPolicy, num_classes: int) -> None:
        self.num_classes = num_classes
        self.mix_p = policy.mix_p
        self._mix = None
        if policy.mixup is None and policy.cutmix is None:
            return
        # imported only here: torchvision costs a second to import, and a distributed
        # rank (a fresh process) that mixes no labels need not pay it
        from torchvision.transforms import v2  # noqa: PLC0415

        mixers = []
        if policy.mixup is not None:
            mixers.append(v2.MixUp(alpha=policy.mixup.alpha, num_classes=num_classes))
        if policy.cutmix is not None:
            mixers.append(v2.CutMix(alpha=policy.cutmix.alpha, num_classes=num_classes))
        self._mix = v2.RandomChoice(mixers) if len(mixers) > 1 else mixers[0]

    @property
    def enabled(self) -> bool:
        return self._mix is not None

    def __call__(self, images: torch.Tensor, labels: torch.Tensor
                 ) -> tuple[torch.Tensor, torch.Tensor]:
        # torchvision's MixUp/CutMix draw from the global RNG; so does the choice here
        # (the training loop seeds it per epoch).
        if self._mix is None or torch.rand(1).item() >= self.mix_p:
            return images, torch.nn.functional.one_hot(labels, self.num_classes).float()
        return self._mix(images, labels)
