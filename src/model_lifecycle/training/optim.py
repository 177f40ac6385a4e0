"""Optimisers with weight decay on weights only (not on norms and biases), and a
learning-rate multiplier per parameter group."""

from __future__ import annotations

import torch
from torch import nn

from model_lifecycle.training.config import OptimizerParams

NORMS = (nn.modules.batchnorm._NormBase, nn.GroupNorm, nn.LayerNorm)


def parameter_groups(model: nn.Module, weight_decay: float, *, norm_bias_lr_scale: float = 1.0,
                     norm_weight_lr_scale: float = 1.0) -> list[dict]:
    """Trainable parameters in four groups: weights (matrices, kernels; decayed), other
    biases, norm-layer biases and norm-layer scales (none of them decayed).

    Each group carries an ``lr_scale``: the training loop sets its learning rate to the
    scheduled one times that. Norm biases and scales get ``norm_bias_lr_scale`` and
    ``norm_weight_lr_scale`` (0 keeps them at their initial values).
    """
    norms = [m for m in model.modules() if isinstance(m, NORMS)]
    # by id: tensors compare element-wise, so set membership must not fall back to ==
    norm_biases = {id(m.bias) for m in norms if m.bias is not None}
    norm_weights = {id(m.weight) for m in norms if m.weight is not None}
    groups = {"decay": [], "bias": [], "norm_bias": [], "norm_weight": []}
    for parameter in model.parameters():
        if not parameter.requires_grad:
            continue
        key = ("norm_bias" if id(parameter) in norm_biases else
               "norm_weight" if id(parameter) in norm_weights else
               "decay" if parameter.ndim > 1 else "bias")
        groups[key].append(parameter)
    scales = {"decay": 1.0, "bias": 1.0, "norm_bias": norm_bias_lr_scale,
              "norm_weight": norm_weight_lr_scale}
    return [{"params": params, "name": key, "lr_scale": scales[key],
             "weight_decay": weight_decay if key == "decay" else 0.0}
            for key, params in groups.items()]


def build_optimizer(model: nn.Module, params: OptimizerParams) -> torch.optim.Optimizer:
    groups = parameter_groups(model, params.weight_decay,
                              norm_bias_lr_scale=params.norm_bias_lr_scale,
                              norm_weight_lr_scale=params.norm_weight_lr_scale)
    if params.name == "adamw":
        return torch.optim.AdamW(groups, lr=params.lr, betas=params.betas)
    return torch.optim.SGD(groups, lr=params.lr, momentum=params.momentum,
                           nesterov=params.momentum > 0)
