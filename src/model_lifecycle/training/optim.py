"""Optimisers with weight decay on weights only (not on norms and biases)."""

from __future__ import annotations

import torch
from torch import nn

from model_lifecycle.training.config import OptimizerParams


def parameter_groups(model: nn.Module, weight_decay: float) -> list[dict]:
    """Trainable parameters split into decayed (matrices, kernels) and not (1-D: norms, biases)."""
    decay, no_decay = [], []
    for parameter in model.parameters():
        if parameter.requires_grad:
            (no_decay if parameter.ndim <= 1 else decay).append(parameter)
    return [{"params": decay, "weight_decay": weight_decay},
            {"params": no_decay, "weight_decay": 0.0}]


def build_optimizer(model: nn.Module, params: OptimizerParams) -> torch.optim.Optimizer:
    groups = parameter_groups(model, params.weight_decay)
    if params.name == "adamw":
        return torch.optim.AdamW(groups, lr=params.lr, betas=params.betas)
    return torch.optim.SGD(groups, lr=params.lr, momentum=params.momentum,
                           nesterov=params.momentum > 0)
