"""Layer sizes and cost of a model: record and restore layer sizes, so a pruned model
reloads from plain tensors; count its MACs and parameters.

A pruned model no longer matches its constructor. Torch-Pruning's own
``tp.state_dict`` stores module objects, which only an unrestricted (code-running)
unpickler can read back; this record holds integers only, and is applied to a freshly
built model before its weights are loaded (hand-written for that reason).
"""

from __future__ import annotations

import hashlib
import math

import torch
import torch_pruning as tp
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


def float_shell(model: nn.Module, sizes: dict[str, dict[str, int]]) -> nn.Module:
    """``model`` (freshly built from its spec) resized to the recorded (possibly pruned)
    layer sizes, weights unset: the float shape of a quantized model."""
    shapes = {}
    modules = dict(model.named_modules())
    for name, attrs in sizes.items():
        module = modules[name]
        if isinstance(module, nn.Conv2d):
            shape = (attrs["out_channels"], attrs["in_channels"] // attrs["groups"],
                     *module.kernel_size)
            shapes[f"{name}.weight"] = torch.empty(shape)
            shapes[f"{name}.bias"] = torch.empty(attrs["out_channels"])
        elif isinstance(module, nn.Linear):
            shapes[f"{name}.weight"] = torch.empty(attrs["out_features"], attrs["in_features"])
            shapes[f"{name}.bias"] = torch.empty(attrs["out_features"])
        else:
            for key in ("weight", "bias", "running_mean", "running_var"):
                shapes[f"{name}.{key}"] = torch.empty(attrs["num_features"])
            shapes[f"{name}.num_batches_tracked"] = torch.zeros((), dtype=torch.long)
    resize_layers(model, sizes, shapes)
    model.encoder.feature_dim = model.head.in_features
    return model


def cost(model: nn.Module, example: torch.Tensor) -> dict[str, float]:
    """MACs (multiply-accumulates per image, traced on ``example``) and parameter count."""
    macs, params = tp.utils.count_ops_and_params(model, example)
    return {"macs": float(macs), "params": float(params)}


def weights_id(model: nn.Module) -> str:
    """A name for the model's weights: the same weights (a retrained model that came out
    bit-identical, a reloaded file) get the same name, others another. Every tensor of
    the state dict counts, quantized ones by their integer values, scales and zero points."""
    digest = hashlib.sha256()
    if isinstance(getattr(model, "onnx_bytes", None), bytes):  # an ONNX file: its graph
        digest.update(model.onnx_bytes)                        # holds the weights
    for key, value in model.state_dict().items():
        digest.update(key.encode())
        # a quantized linear keeps (weight, bias) in a tuple
        for tensor in (value if isinstance(value, tuple | list) else (value,)):
            if isinstance(tensor, torch.Tensor):
                plain = tensor.dequantize() if tensor.is_quantized else tensor
                digest.update(plain.detach().cpu().contiguous().reshape(-1)
                              .view(torch.uint8).numpy().tobytes())
    return f"m-{digest.hexdigest()[:12]}"


def model_id(model: object) -> str | None:
    """The ``model_id`` a saved model carries (``trained_on``, set when its node saved
    it: :func:`weights_id` of its weights), or None for one that carries none."""
    return (getattr(model, "trained_on", None) or {}).get("model_id")


def sparsity(model: nn.Module) -> float:
    """Share of zero weights over every float convolution and linear layer (what
    unstructured pruning zeroes); NaN for a model with none (INT8, an ONNX file)."""
    layers = [m for m in model.modules() if isinstance(m, nn.Conv2d | nn.Linear)]
    total = sum(m.weight.numel() for m in layers)
    return sum(int((m.weight == 0).sum()) for m in layers) / total if total else math.nan
