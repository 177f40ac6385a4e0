"""``params:compress`` — pruning, quantization and distillation settings.

Each field's docstring is its entry in docs/parameters.md.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field, field_validator, model_validator

from model_lifecycle.params import StrictModel
from model_lifecycle.training.config import OptimizerParams, ScheduleParams


class StructuredPruneParams(StrictModel):
    importance: Literal["magnitude", "taylor"] = "magnitude"
    """Channel importance: `magnitude` (L2 norm) or `taylor` (first-order, needs labels)."""
    target: float = Field(2.0, gt=1)
    """Reduction factor to reach: × fewer MACs (or parameters, see `metric`)."""
    metric: Literal["macs", "params"] = "macs"
    """What `target` counts: `macs` or `params`."""
    round_to: int | None = Field(8, ge=1)
    """Channel counts kept multiples of this (faster CPU kernels); null: any."""
    keep_stem: bool = False
    """The first convolution keeps all its channels (for a frozen whitened stem,
    `finetune.whiten_stem`, whose filter sizes are not learned)."""
    steps: int = Field(3, ge=1)
    """Milestones towards the target, each followed by `recovery.epochs_per_step`."""
    layer_ratios: dict[str, float] = {}
    """Slower (or faster) pruning of named layers, `{module name: ratio}`, e.g.
    `{encoder.stages.1: 0.6}`: all layers shrink together until the target, these at
    `ratio / 0.9` of the others' pace (Torch-Pruning's `pruning_ratio_dict`)."""

    @field_validator("layer_ratios")
    @classmethod
    def _ratios(cls, value: dict[str, float]) -> dict[str, float]:
        bad = {name: ratio for name, ratio in value.items() if not 0 < ratio < 1}
        if bad:
            raise ValueError(f"every ratio must be in (0, 1), got {bad}")
        return value


class UnstructuredPruneParams(StrictModel):
    amount: float = Field(0.5, gt=0, lt=1)
    """Share of all convolution and linear weights zeroed (no speed-up: dense kernels)."""


class RecoveryTeacherParams(StrictModel):
    """Recovery from the fine-tuned model's soft targets (Hinton's loss, as `distill`)."""

    temperature: float = Field(1.0, gt=0)
    """Softmax temperature of the soft targets (1 suits a label-smoothed teacher)."""
    alpha: float = Field(0.9, ge=0, le=1)
    """Weight of the soft targets (1 - alpha: the labels, without label smoothing)."""
    flip: bool = False
    """The teacher's logits averaged over each view and its mirror image."""


class RecoveryParams(StrictModel):
    """Fine-tuning of the pruned model on train_labeled (the supervised augmentation)."""

    epochs_per_step: int | float = Field(10, ge=0)
    """Epochs after each pruning milestone (structured only)."""
    final_epochs: int | float = Field(30, ge=0)
    """Further epochs after the last milestone's (structured) or after zeroing."""
    batch_size: int = Field(64, ge=2)
    """Images per batch."""
    label_smoothing: float = Field(0.1, ge=0, lt=1)
    """Label smoothing (use the fine-tuned model's own)."""
    optimizer: OptimizerParams = OptimizerParams(lr=0.02)
    """Optimizer."""
    schedule: ScheduleParams = ScheduleParams(kind="cosine", warmup_epochs=0)
    """Learning-rate schedule of each recovery run."""
    teacher: RecoveryTeacherParams | None = None
    """The unpruned model teaches the pruned one during recovery (knowledge
    distillation, as Torch-Pruning's examples recover); null: the labels alone."""


class PruneParams(StrictModel):
    method: Literal["structured", "unstructured"] = "structured"
    """`structured` (Torch-Pruning removes whole channels: faster) or `unstructured`
    (weights zeroed: smaller when compressed, not faster)."""
    structured: StructuredPruneParams | None = None
    """Settings of structured pruning; null with `method: unstructured`."""
    unstructured: UnstructuredPruneParams | None = None
    """Settings of unstructured pruning; null with `method: structured`."""
    recovery: RecoveryParams = RecoveryParams()
    """Recovery fine-tuning."""

    @model_validator(mode="after")
    def _one_method(self) -> PruneParams:
        other = "unstructured" if self.method == "structured" else "structured"
        if getattr(self, other) is not None:
            raise ValueError(f"compress.prune.{other} does not apply to method "
                             f"'{self.method}': set it to null (or change the method)")
        if getattr(self, self.method) is None:  # the method's defaults
            default = (StructuredPruneParams() if self.method == "structured"
                       else UnstructuredPruneParams())
            object.__setattr__(self, self.method, default)
        return self


class QuantizeParams(StrictModel):
    mode: Literal["static", "dynamic", "qat"] = "static"
    """`static` (INT8 weights and activations, per-channel, calibrated), `dynamic`
    (linear layers only) or `qat` (quantization-aware fine-tuning)."""
    backend: Literal["x86", "qnnpack"] = "x86"
    """Kernels: `x86` CPUs (fbgemm/onednn) or ARM (`qnnpack`)."""
    source: Literal["finetuned", "pruned"] = "finetuned"
    """Which model is quantized."""
    calibration_batches: int = Field(8, ge=1)
    """static: training batches observed (drawn with `runtime.seed`)."""
    calibration_batch_size: int = Field(64, ge=1)
    """static: images per calibration batch (at most the train_labeled images; more are
    capped, with a warning)."""
    qat_epochs: int | float = Field(3, gt=0)
    """qat: fake-quantized fine-tuning epochs."""
    qat_lr: float = Field(0.001, gt=0)
    """qat: learning rate."""


class DistillParams(StrictModel):
    student_arch: str = "small_cnn"
    """Student architecture."""
    student_kwargs: dict[str, Any] = {"width": 12}
    """Student options, e.g. `{width: 12}` (small_cnn) or `{widths: [24, 32, 56, 56]}`
    (fast_cnn)."""
    whiten_stem: bool = False
    """The student's first convolution becomes frozen patch-whitening filters (as a
    teacher trained with `finetune.whiten_stem` has)."""
    init_from_teacher: bool = False
    """Start from the teacher's leading encoder stages wherever the student's have the
    same shapes (e.g. fast_cnn widths [24, 32, 56, 56] under a width-0.5 teacher)."""
    temperature: float = Field(4.0, gt=0)
    """Softmax temperature of the soft targets (1 suits a label-smoothed teacher)."""
    alpha: float = Field(0.9, ge=0, le=1)
    """Weight of the teacher's soft targets (1 - alpha: the labels)."""
    teacher_flip: bool = False
    """Soft targets from the teacher's logits averaged over each training view and its
    mirror image (the flip test-time augmentation, as a stronger teacher); one more
    teacher forward pass per batch."""
    use_unlabeled: bool = True
    """Also train on train_unlabeled through the teacher's soft targets."""
    epochs: int | float = Field(30, gt=0)
    """Passes over the student's training images; fractional: the last stops part-way."""
    budget_seconds: float | None = Field(None, gt=0)
    """Seconds of training (warm-up included): the epoch count is set from a measured
    warm-up and re-planned after every epoch at the pace the run keeps; `epochs` is then
    ignored."""
    batch_size: int = Field(128, ge=2)
    """Images per batch."""
    optimizer: OptimizerParams = OptimizerParams(lr=0.05, weight_decay=5e-4)
    """Optimizer."""
    schedule: ScheduleParams = ScheduleParams(kind="onecycle", warmup_epochs=3)
    """Learning-rate schedule."""


class CompressParams(StrictModel):
    """Validated ``compress`` group of ``parameters_compress.yml``."""

    prune: PruneParams = PruneParams()
    """Pruning (the `pruned` variant)."""
    quantize: QuantizeParams = QuantizeParams()
    """INT8 quantization (the `quantized` variant)."""
    distill: DistillParams = DistillParams()
    """Distillation into a smaller student (the `distilled` variant)."""
