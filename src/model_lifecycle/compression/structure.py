"""Record and restore layer sizes, so a pruned model reloads from plain tensors.

A pruned model no longer matches its constructor. Torch-Pruning's own
``tp.state_dict`` stores module objects, which only an unrestricted (code-running)
unpickler can read back; this record holds integers only, and is applied to a freshly
built model before its weights are loaded (hand-written for that reason).
"""

from __future__ import annotations

import torch
from torch import nn

_SIZES = {
    nn.Conv2d: ("in_channels", "out_channels", "groups"),
    nn.Linear: ("in_features", "out_features"),
    nn.BatchNorm2d: ("num_features",),
    nn.BatchNorm1d: ("num_features",),
}


def layer_sizes(model: nn.Module) -> dict[str, dict[str, int]]:
    """``{module name: {size attribute: value}}`` for convolutions, linears and batch norms."""
    return {name: {attr: int(getattr(module, attr)) for attr in _SIZES[type(module)]}
            for name, module in model.named_modules() if type(module) in _SIZES}


def resize_layers(model: nn.Module, sizes: dict[str, dict[str, int]],
                  state_dict: dict[str, torch.Tensor]) -> nn.Module:
    """Give ``model``'s layers the recorded sizes and tensors shaped like ``state_dict``
    (values are loaded afterwards with ``load_state_dict``)."""
    modules = dict(model.named_modules())
    for name, attrs in sizes.items():
        module = modules[name]
        for attr, value in attrs.items():
            setattr(module, attr, value)
        for key, tensor in list(module.named_parameters(recurse=False)):
            shaped = state_dict[f"{name}.{key}" if name else key]
            setattr(module, key, nn.Parameter(torch.empty_like(shaped), tensor.requires_grad))
        for key, buffer in list(module.named_buffers(recurse=False)):
            full = f"{name}.{key}" if name else key
            if buffer is not None and full in state_dict:
                module.register_buffer(key, torch.empty_like(state_dict[full]))
    return model
