"""``params:compress`` — pruning, quantization and distillation settings."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field

from model_lifecycle.params import StrictModel
from model_lifecycle.training.config import OptimizerParams, ScheduleParams


class PruneParams(StrictModel):
    method: Literal["structured", "unstructured"] = "structured"
    importance: Literal["magnitude", "taylor"] = "magnitude"  # structured
    target: float = Field(2.0, gt=1)  # structured: × fewer MACs (or params)
    metric: Literal["macs", "params"] = "macs"
    round_to: int | None = Field(8, ge=1)  # channel counts kept multiples of this; null: any
    keep_stem: bool = False  # the first convolution keeps all its channels
    steps: int = Field(3, ge=1)  # milestones, each followed by a recovery fine-tune
    recovery_epochs: int = Field(10, ge=0)  # per milestone
    final_epochs: int = Field(30, ge=0)  # after the last milestone
    lr: float = Field(0.02, gt=0)  # recovery fine-tuning
    amount: float = Field(0.5, gt=0, lt=1)  # unstructured: share of weights zeroed


class QuantizeParams(StrictModel):
    mode: Literal["static", "dynamic", "qat"] = "static"  # dynamic: linear layers only
    backend: Literal["x86", "qnnpack"] = "x86"  # kernels: x86 CPUs, or ARM (qnnpack)
    qat_epochs: int = Field(3, ge=1)  # qat: fake-quantized fine-tuning epochs
    qat_lr: float = Field(0.001, gt=0)
    source: Literal["finetuned", "pruned"] = "finetuned"
    calibration_batches: int = Field(8, ge=1)  # static: training batches observed


class DistillParams(StrictModel):
    student_arch: str = "small_cnn"
    student_kwargs: dict[str, Any] = {"width": 12}
    temperature: float = Field(4.0, gt=0)
    alpha: float = Field(0.9, ge=0, le=1)  # weight of the soft (teacher) term
    use_unlabeled: bool = True  # train_unlabeled through the teacher's soft targets
    # start from the teacher's leading encoder stages wherever the student's have the
    # same shapes (e.g. fast_cnn widths [24, 32, 56, 56] under a width-0.5 teacher)
    init_from_teacher: bool = False
    epochs: int = Field(30, ge=1)
    batch_size: int = Field(128, ge=2)
    optimizer: OptimizerParams = OptimizerParams(lr=0.05, weight_decay=5e-4)
    schedule: ScheduleParams = ScheduleParams(kind="onecycle", warmup_epochs=3)


class LatencyParams(StrictModel):
    threads: int = Field(1, ge=1)
    batch_sizes: tuple[int, ...] = (1, 32)
    warmup: int = Field(5, ge=0)
    repeats: int = Field(20, ge=3)
    channels_last: bool = True  # memory format of weights and input while timed


class CompressParams(StrictModel):
    """Validated ``compress`` group of ``parameters_compress.yml``."""

    prune: PruneParams = PruneParams()
    quantize: QuantizeParams = QuantizeParams()
    distill: DistillParams = DistillParams()
    latency: LatencyParams = LatencyParams()
