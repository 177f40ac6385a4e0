"""Validated ``adapt`` group (test-time adaptation): which model, which methods, which
shifted test set.

No torch here: parameters are checked before a run starts. Each field's docstring is
its entry in docs/parameters.md.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

from pydantic import Field, field_validator

from model_lifecycle.params import StrictModel, UserPath
from model_lifecycle.trust.config import RobustnessParams
from model_lifecycle.variants import Variant, variants

METHODS = ("none", "bn", "tent")


def adaptable_variants() -> tuple[Variant, ...]:
    """The variants test-time adaptation can update: the differentiable ones (an INT8
    variant, PyTorch or ONNX, has no autograd and folded batch norms)."""
    return tuple(v for v in variants() if v.float_source is None)


class AdaptParams(StrictModel):
    """Validated ``adapt`` group of ``parameters_adapt.yml``."""

    variant: str = "finetuned"
    """The variant adapted (`finetuned`, `pruned`, `distilled`, `scratch`, `robust`, …);
    INT8 variants cannot be adapted."""
    methods: tuple[Literal["none", "bn", "tent"], ...] = METHODS
    """`none` (the model as it is), `bn` (batch-norm statistics of the test stream) and/or
    `tent` (entropy minimisation on the normalization layers' scale and shift); bn or tent
    at least."""
    batch_size: int = Field(128, gt=0)
    """Test images per batch: each batch is normalised with its own statistics and gets
    one TENT update (the last batch takes the remainder)."""
    optimizer: Literal["adam", "sgd"] = "adam"
    """TENT's optimizer: `adam` (betas 0.9, 0.999) or `sgd` (momentum 0.9)."""
    lr: float = Field(1e-3, gt=0)
    """TENT's learning rate."""
    steps: int = Field(1, ge=1)
    """TENT updates per test batch (its predictions are those of the last forward pass)."""
    layers: tuple[str, ...] | None = None
    """TENT updates the scale and shift of the normalization layers inside these modules
    only (e.g. `[encoder.stages.0, encoder.stages.1]`: the first blocks, where pixel-level
    corruptions act); null: every normalization layer. A name that holds no
    normalization layer of the model is refused."""
    episodic: bool = True
    """Reset the model (and TENT's optimizer) to the source model before each stream
    (each corruption × severity); false: adapt on across streams."""
    corruptions: Literal["all"] | tuple[str, ...] = "all"
    """Shifted test sets: `all` or a list of corruption names (see docs/trust.md);
    ignored when `path` is set."""
    severities: tuple[int, ...] = (5,)
    """Corruption severities, 1 (mildest) to 5; ignored when `path` is set."""
    sample: int | None = Field(2000, ge=1)
    """Test images in each stream (a seeded sample); null: all of them."""
    seed: int = 0
    """Seeds the sample, the stream order and the random corruptions."""
    path: UserPath | None = None
    """A folder of your own shifted images, `<path>/<class>/<image>` with the project's
    class names, read like ingest reads a folder; null: corrupt the test split."""

    @field_validator("variant")
    @classmethod
    def _adaptable(cls, value: str) -> str:
        names = [v.name for v in adaptable_variants()]
        if value in names:
            return value
        if value in {v.name for v in variants()}:
            raise ValueError(f"{value} is an INT8 model, without gradients or batch-norm "
                             f"statistics to adapt: choose one of {', '.join(names)}")
        raise ValueError(f"unknown variant: choose one of {', '.join(names)}")

    @field_validator("methods")
    @classmethod
    def _adapting_method(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        if not {"bn", "tent"} & set(value):
            raise ValueError("name bn or tent (or both): the pipeline makes an adapted model")
        return tuple(dict.fromkeys(value))

    # the same rules as evaluate.robustness
    @field_validator("corruptions")
    @classmethod
    def _known_corruptions(cls, value: Any) -> Any:
        return RobustnessParams._known_corruptions(value)

    @field_validator("severities")
    @classmethod
    def _known_severities(cls, value: tuple[int, ...]) -> tuple[int, ...]:
        return RobustnessParams._known_severities(value)

    @field_validator("layers")
    @classmethod
    def _some_layers(cls, value: tuple[str, ...] | None) -> tuple[str, ...] | None:
        if value is not None and not value:
            raise ValueError("an empty list updates nothing: name modules (e.g. "
                             "[encoder.stages.0]) or set null to update every norm layer")
        return value

    @field_validator("path")
    @classmethod
    def _a_folder(cls, value: str | None) -> str | None:
        if value is not None and not Path(value).is_dir():
            raise ValueError("not a folder: point it at <folder>/<class>/<image> or set "
                             "it to null to corrupt the test split")
        return value

    def corruption_names(self) -> tuple[str, ...]:
        from model_lifecycle.trust.corruptions import corruption_names  # noqa: PLC0415

        return corruption_names() if self.corruptions == "all" else self.corruptions

    def adapted_by(self) -> str:
        """The method whose model is saved: tent when it runs, else bn."""
        return "tent" if "tent" in self.methods else "bn"
