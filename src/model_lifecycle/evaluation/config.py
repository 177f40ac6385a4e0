"""``params:evaluate`` — how every model variant is measured."""

from __future__ import annotations

from pydantic import Field

from model_lifecycle.compression.config import LatencyParams
from model_lifecycle.params import StrictModel


class EvaluateParams(StrictModel):
    """Validated ``evaluate`` group of ``parameters_evaluate.yml``."""

    top_k: int = Field(3, ge=1)  # top-k accuracy
    calibration_bins: int = Field(15, ge=1)  # equal-width confidence bins of the ECE
    latency: LatencyParams = LatencyParams(repeats=30)
    include_scratch: bool = False  # also the `baseline` pipeline's from-scratch model
