"""Validated training parameters shared by the pretrain and finetune groups."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from model_lifecycle.params import StrictModel


class OptimizerParams(StrictModel):
    name: Literal["sgd", "adamw"] = "sgd"
    lr: float = Field(0.05, gt=0)  # peak learning rate
    momentum: float = Field(0.9, ge=0, lt=1)  # sgd only (Nesterov)
    weight_decay: float = Field(5e-4, ge=0)  # never applied to norms and biases
    betas: tuple[float, float] = (0.9, 0.999)  # adamw only


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
