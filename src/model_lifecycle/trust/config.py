"""Validated trust parameters: the ``explain`` group, and the robustness and attack
settings that ``evaluate`` and adversarial fine-tuning share.

No torch here: parameters are checked before a run starts. Each field's docstring is
its entry in docs/parameters.md.
"""

from __future__ import annotations

from fractions import Fraction
from typing import Annotated, Any, Literal

from pydantic import BeforeValidator, Field, field_validator, model_validator

from model_lifecycle.params import StrictModel


def _pixel_amount(value: Any) -> Any:
    """``"8/255"`` → 0.0313…, ``"8.75/255"`` → 0.0343…: attack sizes are read the way
    papers write them (1.25 × 7/255 is 8.75/255)."""
    if isinstance(value, str):
        try:
            if "/" in value:
                numerator, denominator = (Fraction(part.strip()) for part in value.split("/"))
                return float(numerator / denominator)
            return float(value)
        except (ValueError, ZeroDivisionError):
            raise ValueError(f"write it as a number or a fraction such as 8/255, "
                             f"not {value!r}") from None
    return value


# A size on the 0–1 pixel scale, written as a number or a fraction (8/255).
PixelAmount = Annotated[float, BeforeValidator(_pixel_amount)]

ATTACKS = ("fgsm", "pgd")
EXPLAIN_METHODS = ("integrated_gradients", "saliency", "grad_cam", "occlusion")


class AttackParams(StrictModel):
    """An L∞ attack's size (shared by evaluation and adversarial fine-tuning)."""

    epsilon: PixelAmount = Field(8 / 255, gt=0, le=1)
    """Largest change of any pixel, on the 0–1 scale (8/255 may be written as is)."""
    alpha: PixelAmount = Field(2 / 255, gt=0, le=1)
    """Step size of each PGD step (and of FGSM's step after its random start)."""
    steps: int = Field(10, ge=1)
    """PGD steps."""


class AdversarialEvalParams(AttackParams):
    """``evaluate.adversarial``: white-box FGSM and PGD (random start) against every
    float variant; INT8 variants are attacked by transfer from their float source."""

    methods: tuple[Literal["fgsm", "pgd"], ...] = ATTACKS
    """Attacks measured: `fgsm` and/or `pgd`."""
    images: int | None = Field(500, ge=1)
    """Test images attacked (a seeded sample); null: the whole test split."""
    seed: int = 0
    """Seeds the sample and PGD's random starts."""


class RobustnessParams(StrictModel):
    """``evaluate.robustness``: accuracy under the common corruptions of CIFAR-10-C,
    generated from the test images (nothing downloaded)."""

    corruptions: Literal["all"] | tuple[str, ...] = "all"
    """`all` or a list of corruption names (see docs/trust.md)."""
    severities: tuple[int, ...] = (1, 2, 3, 4, 5)
    """Severities measured, 1 (mildest) to 5."""
    images: int | None = Field(2000, ge=1)
    """Test images corrupted (a seeded sample); null: the whole test split."""
    seed: int = 0
    """Seeds the sample and every random corruption."""

    @field_validator("corruptions")
    @classmethod
    def _known_corruptions(cls, value: Any) -> Any:
        if value == "all":
            return value
        from model_lifecycle.trust.corruptions import corruption_names  # noqa: PLC0415

        known = corruption_names()
        for name in value:
            if name not in known:
                raise ValueError(f"unknown corruption {name!r}: choose among "
                                 f"{', '.join(known)} (or all)")
        if not value:
            raise ValueError("name at least one corruption (or all)")
        return value

    @field_validator("severities")
    @classmethod
    def _known_severities(cls, value: tuple[int, ...]) -> tuple[int, ...]:
        if not value or any(s not in range(1, 6) for s in value):
            raise ValueError("severities are 1 to 5, at least one")
        return tuple(sorted(set(value)))

    def names(self) -> tuple[str, ...]:
        from model_lifecycle.trust.corruptions import corruption_names  # noqa: PLC0415

        return corruption_names() if self.corruptions == "all" else self.corruptions


class ExplainParams(StrictModel):
    """Validated ``explain`` group of ``parameters_explain.yml``."""

    methods: tuple[Literal["integrated_gradients", "saliency", "grad_cam", "occlusion"],
                   ...] = ("integrated_gradients", "saliency", "grad_cam", "occlusion")
    """Attribution methods (Captum) for float variants; the first is the report's."""
    images_per_class: int = Field(2, ge=1)
    """Test images explained per class (a seeded sample; a class with fewer test images:
    all it has, with a warning)."""
    seed: int = 0
    """Seeds the sample and the random-order baseline of the faithfulness curves."""
    reference: Literal["blur", "black"] = "blur"
    """What stands for a removed pixel: IG's baseline, occlusion's fill, what deletion
    puts in and where insertion starts — the image blurred, or black."""
    ig_steps: int = Field(32, ge=2)
    """Integrated Gradients: points on the path from the reference image (`reference`) to the
    input."""
    curve_steps: int = Field(16, ge=2)
    """Deletion/insertion curves: pixel fractions measured between 0 and 1."""
    top_fraction: float = Field(0.1, gt=0, le=1)
    """Attribution drift: share of the most important pixels compared."""
    occlusion_window: int = Field(4, ge=1)
    """Occlusion: square patch hidden, in pixels (smaller than the images)."""
    occlusion_stride: int = Field(2, ge=1)
    """Occlusion: pixels between patches (at most `occlusion_window`)."""

    @field_validator("methods")
    @classmethod
    def _some_methods(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        if not value:
            raise ValueError(f"name at least one of {', '.join(EXPLAIN_METHODS)}")
        return tuple(dict.fromkeys(value))

    @model_validator(mode="after")
    def _stride_within_window(self) -> ExplainParams:
        if self.occlusion_stride > self.occlusion_window:
            raise ValueError(
                f"explain.occlusion_stride {self.occlusion_stride} is larger than "
                f"explain.occlusion_window {self.occlusion_window}, so the pixels between "
                f"patches are never hidden: set it to {self.occlusion_window} or less")
        return self

    def constant_occlusion(self, height: int, width: int, size_from: str) -> str | None:
        """Why occlusion maps of ``height``×``width`` images would be constant (a window
        as large as the image hides all of it in one place: every pixel gets the same
        score, and the drift and faithfulness built on the maps mean nothing), or None.
        Occlusion explains every INT8 variant, whatever ``methods`` says. ``size_from``:
        where the size comes from, for the sentence."""
        if self.occlusion_window < max(height, width):  # Captum slides it, to the edge
            return None
        side = max(height, width)
        fix = (f"set it to {side - 1} or less (and explain.occlusion_stride no larger)"
               if side > 1 else "explain larger images")
        return (f"explain.occlusion_window {self.occlusion_window} covers the whole "
                f"{height}×{width} images ({size_from}), so every occlusion map would be "
                f"constant: {fix}.")
