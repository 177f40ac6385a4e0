"""``params:register`` and ``params:inference`` — the registry and batch predictions."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field

from model_lifecycle.params import StrictModel


class RegisterParams(StrictModel):
    """Validated ``register`` group of ``parameters_register.yml``."""

    model_name: str = Field("model-lifecycle", min_length=1)
    prefer: Literal["size", "latency"] = "size"  # what makes a champion: file size or latency
    max_accuracy_drop: float = Field(0.01, ge=0, le=1)  # below the baseline (0.01 = 1 point)


class InferenceParams(StrictModel):
    """Validated ``inference`` group of ``parameters_inference.yml``."""

    input_dir: Path | None = None  # a folder of images (searched recursively)
    alias: str = Field("champion", min_length=1)  # which registered version predicts
    batch_size: int = Field(256, ge=1)
