"""``params:evaluate`` — how every model variant is measured."""

from __future__ import annotations

from pydantic import Field

from model_lifecycle.params import StrictModel
from model_lifecycle.trust.config import AdversarialEvalParams, RobustnessParams


class LatencyParams(StrictModel):
    threads: int = Field(1, ge=1)
    """torch threads while timed."""
    batch_sizes: tuple[int, ...] = (1, 32)
    """Batch sizes timed (throughput is measured at the largest)."""
    warmup: int = Field(5, ge=0)
    """Untimed runs first."""
    repeats: int = Field(20, ge=3)
    """Timed runs per turn (`rounds`); the report gives the median (p50) and p95 of all."""
    rounds: int = Field(1, ge=1)
    """The variants take turns this many times (each turn: `warmup` + `repeats` runs);
    p50 and p95 are over all their timed runs. More than 1 keeps speed-ups true on a
    machine whose speed drifts."""
    channels_last: bool = True
    """Weights and input timed channels-last (as served)."""


class EvaluateParams(StrictModel):
    """Validated ``evaluate`` group of ``parameters_evaluate.yml``."""

    top_k: int = Field(3, ge=1)
    """k of the top-k accuracy column."""
    calibration_bins: int = Field(15, ge=1)
    """Equal-width confidence bins of the expected calibration error."""
    latency: LatencyParams = LatencyParams(repeats=30)
    """CPU latency measurement (also used by compress)."""
    robustness: RobustnessParams = RobustnessParams()
    """Corruption robustness (CIFAR-10-C's corruptions, generated)."""
    adversarial: AdversarialEvalParams = AdversarialEvalParams()
    """Adversarial robustness (FGSM, PGD; transfer attacks on INT8)."""
    include_scratch: bool = False
    """Also evaluate `scratch_model` (run `kedro run --pipelines=baseline` first)."""
    include_robust: bool = False
    """Also evaluate `robust_model` (run `kedro run --pipelines=robust` first)."""
