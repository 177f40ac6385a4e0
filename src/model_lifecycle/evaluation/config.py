"""``params:evaluate`` — how every model variant is measured."""

from __future__ import annotations

from pydantic import Field

from model_lifecycle.params import StrictModel


class LatencyParams(StrictModel):
    threads: int = Field(1, ge=1)
    batch_sizes: tuple[int, ...] = (1, 32)
    warmup: int = Field(5, ge=0)
    repeats: int = Field(20, ge=3)
    channels_last: bool = True  # memory format of weights and input while timed


class EvaluateParams(StrictModel):
    """Validated ``evaluate`` group of ``parameters_evaluate.yml``."""

    top_k: int = Field(3, ge=1)  # top-k accuracy
    calibration_bins: int = Field(15, ge=1)  # equal-width confidence bins of the ECE
    latency: LatencyParams = LatencyParams(repeats=30)
    include_scratch: bool = False  # also the `baseline` pipeline's from-scratch model
