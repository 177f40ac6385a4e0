"""``params:ingest`` — where the images come from and how they are split."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

from pydantic import Field, ValidationInfo, field_validator, model_validator

from model_lifecycle.data.convert import MAX_PIXELS, PILLOW_LIMIT
from model_lifecycle.params import StrictModel, UserPath

Source = Literal["digits", "image_folder", "cifar10", "auto"]


class SplitFractions(StrictModel):
    """Held-out fractions. ``test`` is a fraction of all images and is ignored when the
    source brings its own test split; ``val`` is a fraction of the non-test images."""

    val: float = Field(0.1, ge=0.0, lt=1.0)
    """Share of the non-test images held out for validation."""
    test: float = Field(0.2, ge=0.0, lt=1.0)
    """Share of all images held out for test (ignored when the source has its own test
    split)."""


class IngestParams(StrictModel):
    """Validated ``ingest`` group of ``parameters_ingest.yml``."""

    source: Source = "digits"
    """`digits` (scikit-learn's bundled 8×8 digits, no download), `image_folder`, `cifar10` (the
    python batches: the .tar.gz or its folder) or `auto` (cifar10 for such an archive or folder,
    image_folder otherwise)."""
    path: UserPath | None = None
    """Where the files are; required by every source but digits."""
    image_size: int | tuple[int, int] = 32
    """Pixels: one int (square) or [height, width]."""
    channels: Literal[1, 3] | None = None
    """1 or 3; null: the source's own (digits 1, others 3)."""
    resize: Literal["center_crop", "stretch"] = "center_crop"
    """`center_crop` (keep the aspect ratio) or `stretch`."""
    splits: SplitFractions = SplitFractions()
    """Held-out fractions."""
    labeled_fraction: float = Field(1.0, gt=0.0, le=1.0)
    """Share of the training images whose labels are used (the rest: train_unlabeled)."""
    seed: int = 0
    """Seed of the stratified splits."""
    on_bad_image: Literal["error", "skip"] = "error"
    """`error` (stop, naming the file) or `skip` (counted in the dataset report)."""
    max_pixels: int = Field(MAX_PIXELS, ge=1, le=PILLOW_LIMIT)
    """Largest image (width × height) decoded by ingest, inference and the served model;
    larger files are refused from their header (decompression bombs). Default: Pillow's
    own warning threshold; at most twice that (178,956,970), which Pillow refuses
    outright."""
    num_workers: int | None = Field(None, ge=1)
    """Decoding processes for image folders; null: all cores."""

    @field_validator("image_size", mode="before")
    @classmethod
    def _one_or_two_sizes(cls, value: Any) -> Any:
        # pydantic would answer a list of another length with the int branch's
        # "Input should be a valid integer"
        if isinstance(value, list | tuple) and len(value) != 2:  # noqa: PLR2004
            raise ValueError("give one number (a square) or two, [height, width]")
        return value

    @field_validator("image_size")
    @classmethod
    def _positive_size(cls, value: int | tuple[int, int]) -> int | tuple[int, int]:
        sizes = (value,) if isinstance(value, int) else value
        if min(sizes) < 1:
            raise ValueError("image sizes must be positive integers")
        return value

    @model_validator(mode="after")
    def _path_when_needed(self, info: ValidationInfo) -> IngestParams:
        # a run that does not ingest (e.g. register, which reads only the resize mode and
        # the pixel limit) needs no path: the caller says so in the context
        reads_files = (info.context or {}).get("reads_files", True)
        group = (info.context or {}).get("group", "ingest")
        if self.source != "digits" and not self.path and reads_files:
            raise ValueError(
                f"source '{self.source}' reads files: set {group}.path to its location"
            )
        # the run's preflight says it reads them: refused before anything runs, not when
        # the ingest node gets there (after the transfer pipeline's other data set)
        if self.source != "digits" and self.path and (info.context or {}).get(
                "reads_files") is True and not Path(self.path).expanduser().exists():
            raise ValueError(f"{group}.path {self.path} does not exist: point it at the "
                             "image folder or the CIFAR-10 archive or folder")
        if self.source == "digits" and self.path:
            raise ValueError(
                f"{group}.path is set ({self.path}) but source 'digits' reads no files: set "
                f"{group}.source to image_folder, cifar10 or auto, or {group}.path to null"
            )
        return self

    @property
    def size_hw(self) -> tuple[int, int]:
        """(height, width) in pixels."""
        if isinstance(self.image_size, int):
            return (self.image_size, self.image_size)
        return tuple(self.image_size)  # type: ignore[return-value]
