"""INT8 quantization for x86 CPUs, behind one function (``quantize``).

Uses PyTorch's FX graph mode (``torch.ao.quantization``), which works on the
installed torch; moving to torchao's PT2E flow means changing this file only.
Post-training static quantization: batch norms folded into convolutions, per-channel
weight observers, activations calibrated on a few training batches. Dynamic: linear
layers only, activations quantized on the fly. Quantization-aware training (``qat``):
fake-quantized fine-tuning by a caller-supplied ``train`` function, then conversion;
the result has the static model's structure.
"""

from __future__ import annotations

import contextlib
import copy
import warnings
from collections.abc import Callable, Iterable, Iterator

import torch
from torch import nn

from model_lifecycle.models.structure import layer_sizes

DEFAULT_BACKEND = "x86"  # fbgemm + onednn kernels; "qnnpack" for ARM CPUs


def quantize(model: nn.Module, example: torch.Tensor, *, mode: str = "static",
             calibration: Iterable[torch.Tensor] = (),
             train: Callable[[nn.Module], None] | None = None,
             backend: str = DEFAULT_BACKEND) -> nn.Module:
    """An INT8 copy of ``model`` (``model`` itself is unchanged) for the kernels of
    ``backend``. ``calibration`` yields float image batches for ``static`` mode;
    ``train`` fine-tunes the fake-quantized copy in place for ``qat`` mode."""
    with _quiet():
        return _quantize(model, example, mode, calibration, train, backend)


def _quantize(model: nn.Module, example: torch.Tensor, mode: str,
              calibration: Iterable[torch.Tensor],
              train: Callable[[nn.Module], None] | None, backend: str) -> nn.Module:
    from torch.ao.quantization import (  # noqa: PLC0415
        QConfigMapping,
        get_default_qat_qconfig_mapping,
        get_default_qconfig_mapping,
    )
    from torch.ao.quantization.qconfig import default_dynamic_qconfig  # noqa: PLC0415
    from torch.ao.quantization.quantize_fx import (  # noqa: PLC0415
        convert_fx,
        prepare_fx,
        prepare_qat_fx,
    )

    torch.backends.quantized.engine = backend
    float_model = copy.deepcopy(model).eval()
    if mode == "qat":
        if train is None:
            raise ValueError("quantization-aware training needs a train function")
        prepared = prepare_qat_fx(float_model.train(), get_default_qat_qconfig_mapping(backend),
                                  (example[:1],))
        train(prepared)
        prepared.eval()
    elif mode in ("static", "dynamic"):
        mapping = get_default_qconfig_mapping(backend) if mode == "static" else \
            QConfigMapping().set_object_type(nn.Linear, default_dynamic_qconfig)
        prepared = prepare_fx(float_model, mapping, (example[:1],))
        with torch.no_grad():
            for batch in calibration if mode == "static" else ():
                prepared(batch)
    else:
        raise ValueError(f"unknown quantization mode {mode!r}")
    quantized = convert_fx(prepared)
    # What TorchModelDataset needs to rebuild it: the float architecture and its sizes.
    quantized.spec = dict(getattr(model, "spec", {}))
    quantized.layer_sizes = layer_sizes(model)
    quantized.quantization = {"mode": mode, "backend": backend,
                              "example_shape": list(example.shape[1:])}
    return quantized


def fold_batch_norms(model: nn.Module) -> nn.Module:
    """A float copy with batch norms folded into the convolutions before them: the fair
    float baseline for latency (quantization folds them too)."""
    with _quiet():
        from torch.ao.quantization.quantize_fx import fuse_fx  # noqa: PLC0415

        return fuse_fx(copy.deepcopy(model).eval())


@contextlib.contextmanager
def _quiet() -> Iterator[None]:
    """torch.ao.quantization warns that it is deprecated in favour of torchao's PT2E flow
    (the move this module is shaped for); the warnings are not actionable for users."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        warnings.filterwarnings("ignore", message=".*reduce_range will be deprecated")
        warnings.filterwarnings("ignore", message=".*quantized tensor creation functions")
        # rebuilding a saved model's structure observes no data; its weights follow
        warnings.filterwarnings("ignore", message=".*must run observer before calling")
        yield
