"""Validated training parameters: the ``runtime``, ``pretrain`` and ``finetune`` groups.

No torch here: parameters are checked before a run starts, for every pipeline.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field, model_validator

from model_lifecycle.params import StrictModel


class OptimizerParams(StrictModel):
    name: Literal["sgd", "adamw"] = "sgd"
    lr: float = Field(0.05, gt=0)  # peak learning rate
    momentum: float = Field(0.9, ge=0, lt=1)  # sgd only (Nesterov)
    weight_decay: float = Field(5e-4, ge=0)  # never applied to norms and biases
    betas: tuple[float, float] = (0.9, 0.999)  # adamw only
    norm_bias_lr_scale: float = Field(1.0, ge=0)  # lr multiplier for batch-norm biases
    norm_weight_lr_scale: float = Field(1.0, ge=0)  # same for batch-norm scales (0: frozen)


class ScheduleParams(StrictModel):
    kind: Literal["cosine", "onecycle", "constant"] = "cosine"
    warmup_epochs: float = Field(1.0, ge=0)  # linear warm-up (onecycle: the rising part)


class RuntimeParams(StrictModel):
    """``params:runtime`` — where and how training runs."""

    device: Literal["auto", "cpu", "cuda"] = "auto"  # auto: cuda when present
    seed: int = 0
    num_threads: int | None = Field(None, ge=1)  # CPU threads; None: torch's default
    channels_last: bool = True  # memory layout for convolutions
    mixed_precision: bool = True  # bfloat16 autocast, CUDA only


class PretrainParams(StrictModel):
    """Validated ``pretrain`` group of ``parameters_pretrain.yml``."""

    method: Literal["simclr", "simsiam"] = "simclr"
    arch: str = "small_cnn"
    arch_kwargs: dict[str, Any] = {}
    epochs: int = Field(30, ge=1)
    batch_size: int = Field(256, ge=2)
    optimizer: OptimizerParams = OptimizerParams(lr=0.3, weight_decay=1e-4)
    schedule: ScheduleParams = ScheduleParams(kind="cosine", warmup_epochs=2)
    temperature: float = Field(0.2, gt=0)  # simclr
    projection_dim: int = Field(128, ge=2)
    hidden_dim: int = Field(512, ge=2)
    knn_k: int = Field(20, ge=1)
    eval_every: int = Field(5, ge=1)  # epochs between k-NN checks on val
    clip_grad_norm: float | None = Field(None, gt=0)
    checkpoint: str | None = None  # a file; written after every epoch
    resume: bool = False  # continue from `checkpoint` when it exists


class FinetuneParams(StrictModel):
    """Validated ``finetune`` group of ``parameters_finetune.yml``."""

    init: Literal["pretrained", "scratch", "torchvision_weights"] = "pretrained"
    weights_path: str | None = None  # torchvision_weights: a local .pth file
    arch: str = "small_cnn"  # scratch / torchvision_weights (pretrained: the encoder's)
    arch_kwargs: dict[str, Any] = {}
    strategy: Literal["full", "linear_probe", "partial", "bitfit"] = "full"
    frozen_stages: int = Field(0, ge=0)  # partial: encoder stages kept frozen
    epochs: int | float = Field(30, gt=0)  # fractional: the last pass stops part-way
    batch_size: int = Field(64, ge=2)
    optimizer: OptimizerParams = OptimizerParams(lr=0.05, weight_decay=5e-4)
    schedule: ScheduleParams = ScheduleParams(kind="onecycle", warmup_epochs=3)
    label_smoothing: float = Field(0.1, ge=0, lt=1)
    clip_grad_norm: float | None = Field(None, gt=0)
    patience: int | None = Field(None, ge=1)  # early stopping on val accuracy
    eval_every: int = Field(1, ge=1)  # epochs between val checks (the last always runs)
    ema_decay: float | None = Field(None, gt=0, lt=1)  # evaluate and keep averaged weights
    flip_tta: bool = False  # average with mirrored images at evaluation
    shift_tta: int = Field(0, ge=0)  # also average with copies shifted by ± this many pixels
    whiten_stem: bool = False  # scratch: first conv = frozen patch-whitening filters
    dirac_convs: bool = False  # scratch: later convs start as partial identities
    checkpoint: str | None = None
    resume: bool = False

    @model_validator(mode="after")
    def _weights_path_when_needed(self) -> FinetuneParams:
        if self.init == "torchvision_weights" and not self.weights_path:
            raise ValueError("init 'torchvision_weights' needs finetune.weights_path, a local "
                             "torchvision weights file")
        for key in ("whiten_stem", "dirac_convs"):
            if getattr(self, key) and self.init != "scratch":
                raise ValueError(f"finetune.{key} would overwrite {self.init} weights: use it "
                                 "with init: scratch, or set it to false")
        return self
