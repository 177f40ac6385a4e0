"""``params:register`` and ``params:inference`` — the registry and batch predictions."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, field_validator

from model_lifecycle.params import StrictModel, UserPath

# The most pixels one call's images may hold together (register.max_request_pixels):
# also the limit of versions registered before the setting existed.
MAX_REQUEST_PIXELS = 1_000_000_000

class RegisterParams(StrictModel):
    """Validated ``register`` group of ``parameters_register.yml``."""

    model_name: str = Field("model-lifecycle", min_length=1, max_length=256)
    """Name of the registered MLflow model (no `/`, `:` or `%`: it becomes part of the
    `models:/<name>@<alias>` URI)."""

    @field_validator("model_name")
    @classmethod
    def _a_name_mlflow_takes(cls, value: str) -> str:
        if not value.strip():
            raise ValueError("a registered model's name cannot be blank")
        if bad := sorted(set(value) & set("/:%")):
            raise ValueError(f"a registered model's name cannot hold {' or '.join(bad)} (it "
                             "is part of the models:/<name>@<alias> URI): use e.g. "
                             f"{value.replace('/', '-').replace(':', '-').replace('%', '')}")
        return value
    prefer: Literal["size", "latency"] = "size"
    """What makes a champion: the smallest file (`size`) or the lowest batch-1 latency
    (`latency`)."""
    max_accuracy_drop: float = Field(0.01, ge=0, le=1)
    """Largest accuracy loss below the baseline a champion may have (0.01 = 1 point)."""
    max_robust_drop: float | None = Field(0.02, ge=0, le=1)
    """Largest loss of mean corruption accuracy below the baseline's a champion may have
    (0.02 = 2 points); null: robustness is not part of the rule."""
    max_attribution_drift: float | None = Field(None, ge=0, le=2)
    """Largest attribution drift from the baseline (1 − Spearman ρ of the report's
    attribution method; 0: same ranking) a champion may have; null: not checked."""
    replace_inputs: bool = False
    """Let this run's models take the champion and baseline aliases although they answer
    other classes or take images of another size or channel count than the current
    champion (whose clients then get other answers); false: their versions are
    registered and the aliases stay where they are."""
    max_rows: int = Field(1000, ge=1)
    """Most images (table rows) the registered model answers in one call: a request to
    `make serve` with more is refused with HTTP 400 (batch inference sends
    `inference.batch_size` at a time, capped at this)."""
    max_request_pixels: int | None = Field(MAX_REQUEST_PIXELS, ge=1)
    """Most pixels the images of one call may hold together, read from their headers
    before any is decoded: a request over it is refused with HTTP 400 (1,000 rows of
    `ingest.max_pixels` each would take the server's worker half an hour); null: no
    limit but the two per image and per row."""


class InferenceParams(StrictModel):
    """Validated ``inference`` group of ``parameters_inference.yml``."""

    input_dir: UserPath | None = None
    """A folder of images (searched recursively); required."""
    alias: str = Field("champion", min_length=1)
    """The registered version that predicts (`champion`, `baseline`, …)."""
    batch_size: int = Field(256, ge=1)
    """Files read and predicted at a time."""
