"""``params:ingest`` — where the images come from and how they are split."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, field_validator, model_validator

from model_lifecycle.params import StrictModel

Source = Literal["digits", "image_folder", "cifar10", "auto"]


class SplitFractions(StrictModel):
    """Held-out fractions. ``test`` is a fraction of all images and is ignored when the
    source brings its own test split; ``val`` is a fraction of the non-test images."""

    val: float = Field(0.1, ge=0.0, lt=1.0)
    test: float = Field(0.2, ge=0.0, lt=1.0)


class IngestParams(StrictModel):
    """Validated ``ingest`` group of ``parameters_ingest.yml``."""

    source: Source = "digits"
    path: str | None = None  # required by image_folder and cifar10
    image_size: int | tuple[int, int] = 32  # pixels; one int means square
    channels: Literal[1, 3] | None = None  # None: the source's own (digits 1, others 3)
    resize: Literal["center_crop", "stretch"] = "center_crop"
    splits: SplitFractions = SplitFractions()
    labeled_fraction: float = Field(1.0, gt=0.0, le=1.0)  # of the training images
    seed: int = 0
    on_bad_image: Literal["error", "skip"] = "error"
    num_workers: int | None = Field(None, ge=1)  # decoding processes; None: all cores

    @field_validator("image_size")
    @classmethod
    def _positive_size(cls, value: int | tuple[int, int]) -> int | tuple[int, int]:
        sizes = (value,) if isinstance(value, int) else value
        if min(sizes) < 1:
            raise ValueError("image sizes must be positive integers")
        return value

    @model_validator(mode="after")
    def _path_when_needed(self) -> IngestParams:
        if self.source != "digits" and not self.path:
            raise ValueError(
                f"source '{self.source}' reads files: set ingest.path to its location"
            )
        return self

    @property
    def size_hw(self) -> tuple[int, int]:
        """(height, width) in pixels."""
        if isinstance(self.image_size, int):
            return (self.image_size, self.image_size)
        return tuple(self.image_size)  # type: ignore[return-value]
