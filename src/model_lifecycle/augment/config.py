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


class RandomResizedCrop(StrictModel):
    """Crop a random area ``scale`` (fraction) with aspect ``ratio``, resize back."""

    scale: tuple[float, float] = (0.08, 1.0)
    ratio: tuple[float, float] = (3 / 4, 4 / 3)

    @model_validator(mode="after")
    def _ordered(self) -> RandomResizedCrop:
        if not (0 < self.scale[0] <= self.scale[1] <= 1):
            raise ValueError("scale must be (min, max) with 0 < min <= max <= 1")
        if not (0 < self.ratio[0] <= self.ratio[1]):
            raise ValueError("ratio must be (min, max) with 0 < min <= max")
        return self


class HorizontalFlip(StrictModel):
    p: float = Field(0.5, ge=0.0, le=1.0)


class AutoAugment(StrictModel):
    """TrivialAugmentWide (one op, random strength) or RandAugment (``num_ops`` at
    ``magnitude`` out of 30), with the op tables of torchvision."""

    method: Literal["trivial_augment_wide", "rand_augment"] = "trivial_augment_wide"
    num_ops: int = Field(2, ge=1, le=5)  # rand_augment only
    magnitude: int = Field(9, ge=0, le=30)  # rand_augment only


class ColorJitter(StrictModel):
    """Random brightness, contrast, saturation (factors in 1±x) and hue (±x turns)."""

    brightness: float = Field(0.4, ge=0.0)
    contrast: float = Field(0.4, ge=0.0)
    saturation: float = Field(0.4, ge=0.0)
    hue: float = Field(0.1, ge=0.0, le=0.5)
    p: float = Field(0.8, ge=0.0, le=1.0)


class RandomGrayscale(StrictModel):
    p: float = Field(0.2, ge=0.0, le=1.0)


class GaussianBlur(StrictModel):
    """Blur with sigma drawn from ``sigma`` (pixels); kernel about 10% of the image side."""

    sigma: tuple[float, float] = (0.1, 2.0)
    p: float = Field(0.5, ge=0.0, le=1.0)


class RandomErasing(StrictModel):
    """Replace a random rectangle (``scale`` of the area) with uniform noise."""

    scale: tuple[float, float] = (0.02, 0.33)
    ratio: tuple[float, float] = (0.3, 3.3)
    p: float = Field(0.25, ge=0.0, le=1.0)


class ViewPolicy(StrictModel):
    """The per-image transforms, applied in this order (geometry, then colour, then erasing)."""

    random_crop: RandomCrop | None = None
    random_resized_crop: RandomResizedCrop | None = None
    horizontal_flip: HorizontalFlip | None = None
    auto_augment: AutoAugment | None = None
    color_jitter: ColorJitter | None = None
    grayscale: RandomGrayscale | None = None
    gaussian_blur: GaussianBlur | None = None
    random_erasing: RandomErasing | None = None

    @model_validator(mode="after")
    def _one_crop(self) -> ViewPolicy:
        if self.random_crop is not None and self.random_resized_crop is not None:
            raise ValueError("use random_crop or random_resized_crop, not both")
        return self


class MixUp(StrictModel):
    alpha: float = Field(0.2, gt=0.0)


class CutMix(StrictModel):
    alpha: float = Field(1.0, gt=0.0)


class SupervisedPolicy(ViewPolicy):
    """Per-image transforms plus the batch-level label mixing of supervised training.
    With both mixup and cutmix set, each batch uses one of them at random."""

    mixup: MixUp | None = None
    cutmix: CutMix | None = None
    mix_p: float = Field(1.0, ge=0.0, le=1.0)  # share of batches that are mixed


class PreviewParams(StrictModel):
    split: Literal["train_labeled", "train_unlabeled", "val", "test"] = "train_labeled"
    n_images: int = Field(8, ge=1, le=64)
    n_views: int = Field(4, ge=1, le=16)


class AugmentParams(StrictModel):
    """Validated ``augment`` group of ``parameters_augment.yml``."""

    seed: int = 0
    supervised: SupervisedPolicy = SupervisedPolicy()
    pretrain: ViewPolicy = ViewPolicy()
    preview: PreviewParams = PreviewParams()


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
