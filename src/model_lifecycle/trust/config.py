"""Validated trust parameters: the ``explain`` group, and the robustness and attack
settings that ``evaluate`` and adversarial fine-tuning share.

No torch here: parameters are checked before a run starts. Each field's docstring is
its entry in docs/parameters.md.
"""

from __future__ import annotations

from fractions import Fraction
from typing import Annotated, Any, Literal

from pydantic import BeforeValidator, Field, field_validator

from model_lifecycle.params import StrictModel


def _pixel_amount(value: Any) -> Any:
    """``"8/255"`` → 0.0313…, ``"8.75/255"`` → 0.0343…: attack sizes are read the way
    papers write them (1.25 × 7/255 is 8.75/255)."""
    if isinstance(value, str) and "/" in value:
        try:
            numerator, denominator = (Fraction(part.strip()) for part in value.split("/"))
            return float(numerator / denominator)
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
    """Test images explained per class (a seeded sample)."""
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
    """Occlusion: square patch hidden, in pixels."""
    occlusion_stride: int = Field(2, ge=1)
    """Occlusion: pixels between patches."""

    @field_validator("methods")
    @classmethod
    def _some_methods(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        if not value:
            raise ValueError(f"name at least one of {', '.join(EXPLAIN_METHODS)}")
        return tuple(dict.fromkeys(value))
