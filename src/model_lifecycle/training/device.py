"""Device choice, mixed precision, and the rank bookkeeping that DDP under torchrun needs."""

from __future__ import annotations

import contextlib
import functools
import logging
import os

import torch
import torch.distributed as dist

from model_lifecycle.errors import LifecycleError

log = logging.getLogger(__name__)


def resolve_device(choice: str) -> torch.device:
    """``auto`` → CUDA when present, else CPU. Under torchrun, the local rank's GPU."""
    if choice == "cuda" and not torch.cuda.is_available():
        raise LifecycleError("runtime.device is 'cuda' but no CUDA device is visible: "
                             "set runtime.device: auto or cpu.")
    if choice == "cpu" or not torch.cuda.is_available():
        return torch.device("cpu")
    return torch.device("cuda", local_rank())


def autocast(device: torch.device, enabled: bool, *,
             cpu: bool = False) -> contextlib.AbstractContextManager:
    """bfloat16 autocast (no loss scaling needed) on CUDA when ``enabled``, on the CPU
    when ``cpu`` and the CPU has bfloat16 instructions (:func:`cpu_bfloat16`); else a
    no-op."""
    if device.type == "cuda" and enabled:
        return torch.autocast("cuda", dtype=torch.bfloat16)
    if device.type == "cpu" and cpu and _cpu_autocast():
        return torch.autocast("cpu", dtype=torch.bfloat16)
    return contextlib.nullcontext()


@functools.cache
def cpu_bfloat16() -> bool:
    """Whether this CPU computes bfloat16 in hardware (AVX512-BF16: AMD Zen 4 and later,
    Intel Cooper Lake; AMX: Intel Sapphire Rapids and later), where oneDNN's bfloat16
    convolutions train 1.3-1.8x faster than float32 (benchmarks/cpu_bfloat16.py);
    elsewhere oneDNN emulates bfloat16 with float32 instructions, which adds conversions
    instead of saving time. torch has no public query
    for these instruction sets: its own private checks are used, and a torch without
    them counts as no."""
    checks = ("_is_avx512_bf16_supported", "_is_amx_tile_supported")
    return any(bool(getattr(torch.cpu, name, lambda: False)()) for name in checks)


@functools.cache
def _cpu_autocast() -> bool:
    """Whether ``runtime.cpu_bfloat16`` takes effect here; said once per process."""
    if cpu_bfloat16():
        log.info("runtime.cpu_bfloat16: this CPU has bfloat16 instructions; training "
                 "steps run under bfloat16 autocast (evaluation stays float32)")
        return True
    log.warning("runtime.cpu_bfloat16 is set but this CPU has no bfloat16 instructions "
                "(AVX512-BF16 or AMX), where bfloat16 would only add conversions: "
                "training stays in float32.")
    return False


def set_tf32(enabled: bool) -> None:
    """TensorFloat-32 for float32 matrix products and cuDNN convolutions (``enabled``), or
    PyTorch's defaults (matrix products in full float32, convolutions in TF32). Process-
    wide switches: each training node sets them, so one node's choice does not leak
    into the next."""
    torch.backends.cuda.matmul.allow_tf32 = enabled
    torch.backends.cudnn.allow_tf32 = True  # PyTorch's default for convolutions either way


def compiled(module: torch.nn.Module) -> torch.nn.Module:
    """``torch.compile(module)``: the compiled module shares ``module``'s parameters and
    buffers, so training through it trains ``module``. Compiles lazily, on the first
    call (the one place the training loop reaches ``torch.compile``)."""
    return torch.compile(module)


def rank() -> int:
    return dist.get_rank() if dist.is_available() and dist.is_initialized() else 0


def world_size() -> int:
    return dist.get_world_size() if dist.is_available() and dist.is_initialized() else 1


def local_rank() -> int:
    """torchrun's LOCAL_RANK (0 outside torchrun)."""
    return int(os.environ.get("LOCAL_RANK", "0"))


def is_main_process() -> bool:
    """Saving, logging and evaluation happen here only."""
    return rank() == 0
