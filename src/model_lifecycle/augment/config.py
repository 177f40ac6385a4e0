"""``params:augment`` — the augmentation policy, validated and resolved with its defaults.

Two views of the same images: ``supervised`` (fine-tuning, distillation) and
``pretrain`` (the two views of self-supervised pretraining). Every transform is
off when its key is absent or ``null``.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field, model_validator

from model_lifecycle.errors import LifecycleError
from model_lifecycle.params import StrictModel

FORMAT_VERSION = 1


class RandomCrop(StrictModel):
    """Pad by ``padding`` pixels (zeros) and crop back at a random offset."""

    padding: int = Field(4, ge=1)
    """Pixels of zero padding on each side before the random crop."""


class RandomResizedCrop(StrictModel):
    """Crop a random area ``scale`` (fraction) with aspect ``ratio``, resize back."""

    scale: tuple[float, float] = (0.08, 1.0)
    """(min, max) share of the image area cropped."""
    ratio: tuple[float, float] = (3 / 4, 4 / 3)
    """(min, max) aspect ratio of the crop."""

    @model_validator(mode="after")
    def _ordered(self) -> RandomResizedCrop:
        if not (0 < self.scale[0] <= self.scale[1] <= 1):
            raise ValueError("scale must be (min, max) with 0 < min <= max <= 1")
        if not (0 < self.ratio[0] <= self.ratio[1]):
            raise ValueError("ratio must be (min, max) with 0 < min <= max")
        return self


class HorizontalFlip(StrictModel):
    p: float = Field(0.5, ge=0.0, le=1.0)
    """Probability of mirroring an image."""
    alternate: bool = False
    """Training streams of the supervised policy: airbench's alternating flip (Jordan
    2024) — each image's first-epoch flip drawn once (probability ``p``), then reversed
    every other epoch, so two epochs show every image both ways; false: drawn anew each
    time."""


class AutoAugment(StrictModel):
    """TrivialAugmentWide (one op, random strength) or RandAugment (``num_ops`` at
    ``magnitude`` out of 30), with the op tables of torchvision."""

    method: Literal["trivial_augment_wide", "rand_augment"] = "trivial_augment_wide"
    """`trivial_augment_wide` or `rand_augment`."""
    num_ops: int = Field(2, ge=1, le=5)
    """rand_augment: operations per image."""
    magnitude: int = Field(9, ge=0, le=30)
    """rand_augment: strength, out of 30."""


class ColorJitter(StrictModel):
    """Random brightness, contrast, saturation (factors in 1±x) and hue (±x turns)."""

    brightness: float = Field(0.4, ge=0.0)
    """Brightness factor drawn from 1 ± this."""
    contrast: float = Field(0.4, ge=0.0)
    """Contrast factor drawn from 1 ± this."""
    saturation: float = Field(0.4, ge=0.0)
    """Saturation factor drawn from 1 ± this."""
    hue: float = Field(0.1, ge=0.0, le=0.5)
    """Hue shift drawn from ± this (turns)."""
    p: float = Field(0.8, ge=0.0, le=1.0)
    """Probability of jittering an image."""


class RandomGrayscale(StrictModel):
    p: float = Field(0.2, ge=0.0, le=1.0)
    """Probability of turning an image gray."""


class GaussianBlur(StrictModel):
    """Blur with sigma drawn from ``sigma`` (pixels); kernel about 10% of the image side."""

    sigma: tuple[float, float] = (0.1, 2.0)
    """(min, max) blur sigma in pixels."""
    p: float = Field(0.5, ge=0.0, le=1.0)
    """Probability of blurring an image."""


class RandomErasing(StrictModel):
    """Replace a random rectangle (``scale`` of the area) with uniform noise."""

    scale: tuple[float, float] = (0.02, 0.33)
    """(min, max) share of the area erased."""
    ratio: tuple[float, float] = (0.3, 3.3)
    """(min, max) aspect ratio of the erased rectangle."""
    p: float = Field(0.25, ge=0.0, le=1.0)
    """Probability of erasing a rectangle."""


class ViewPolicy(StrictModel):
    """The per-image transforms, applied in this order (geometry, then colour, then erasing)."""

    random_crop: RandomCrop | None = None
    """Pad and crop back at a random offset; null: off."""
    random_resized_crop: RandomResizedCrop | None = None
    """Random area and aspect, resized back; null: off."""
    horizontal_flip: HorizontalFlip | None = None
    """Random mirroring (natural images only); null: off."""
    auto_augment: AutoAugment | None = None
    """TrivialAugmentWide or RandAugment; null: off."""
    color_jitter: ColorJitter | None = None
    """Random brightness, contrast, saturation, hue; null: off."""
    grayscale: RandomGrayscale | None = None
    """Random grayscale; null: off."""
    gaussian_blur: GaussianBlur | None = None
    """Random Gaussian blur; null: off."""
    random_erasing: RandomErasing | None = None
    """A random rectangle replaced with noise; null: off."""

    @model_validator(mode="after")
    def _one_crop(self) -> ViewPolicy:
        if self.random_crop is not None and self.random_resized_crop is not None:
            raise ValueError("use random_crop or random_resized_crop, not both")
        return self


class MixUp(StrictModel):
    alpha: float = Field(0.2, gt=0.0)
    """Beta(alpha, alpha) mixing weight."""


class CutMix(StrictModel):
    alpha: float = Field(1.0, gt=0.0)
    """Beta(alpha, alpha) share of the pasted box."""


class SupervisedPolicy(ViewPolicy):
    """Per-image transforms plus the batch-level label mixing of supervised training.
    With both mixup and cutmix set, each batch uses one of them at random."""

    mixup: MixUp | None = None
    """MixUp of image pairs and their labels; null: off."""
    cutmix: CutMix | None = None
    """CutMix of image pairs and their labels; null: off."""
    mix_p: float = Field(1.0, ge=0.0, le=1.0)
    """Share of batches mixed when mixup or cutmix is on."""


class PreviewParams(StrictModel):
    split: Literal["train_labeled", "train_unlabeled", "val", "test"] = "train_labeled"
    """Which split the preview draws its images from."""
    n_images: int = Field(8, ge=1, le=64)
    """Images in the preview grid."""
    n_views: int = Field(4, ge=1, le=16)
    """Augmented views shown beside each original."""


class AugmentParams(StrictModel):
    """Validated ``augment`` group of ``parameters_augment.yml``."""

    seed: int = 0
    """Seed of the preview's draws."""
    supervised: SupervisedPolicy = SupervisedPolicy()
    """Transforms of fine-tuning, recovery and distillation."""
    pretrain: ViewPolicy = ViewPolicy()
    """Transforms of each of the two views of self-supervised pretraining."""
    preview: PreviewParams = PreviewParams()
    """The augmentation preview figure."""

    @model_validator(mode="after")
    def _alternate_is_supervised(self) -> AugmentParams:
        flip = self.pretrain.horizontal_flip
        if flip is not None and flip.alternate:
            raise ValueError("pretrain.horizontal_flip.alternate would give both views of "
                             "an image the same flip: set it on supervised only")
        return self


def resolve_policy(params: AugmentParams) -> dict[str, Any]:
    """The policy artifact that training reads: every default filled in, ``null`` = off."""
    return {
        "format": FORMAT_VERSION,
        "seed": params.seed,
        "supervised": params.supervised.model_dump(mode="json"),
        "pretrain": params.pretrain.model_dump(mode="json"),
    }


def policy_from_artifact(policy: dict[str, Any], view: Literal["supervised", "pretrain"]
                         ) -> ViewPolicy:
    """Read one view back from a policy artifact (as saved by :func:`resolve_policy`)."""
    if policy.get("format") != FORMAT_VERSION:
        raise LifecycleError(
            f"The augmentation policy has format {policy.get('format')!r}, this version "
            f"reads format {FORMAT_VERSION}: run `kedro run --pipelines=augment` again."
        )
    model = SupervisedPolicy if view == "supervised" else ViewPolicy
    return model.model_validate(policy[view])
