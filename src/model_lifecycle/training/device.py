"""Device choice, mixed precision, and the rank bookkeeping that DDP under torchrun needs."""

from __future__ import annotations

import contextlib
import os

import torch
import torch.distributed as dist

from model_lifecycle.errors import LifecycleError


def resolve_device(choice: str) -> torch.device:
    """``auto`` → CUDA when present, else CPU. Under torchrun, the local rank's GPU."""
    if choice == "cuda" and not torch.cuda.is_available():
        raise LifecycleError("runtime.device is 'cuda' but no CUDA device is visible: "
                             "set runtime.device: auto or cpu.")
    if choice == "cpu" or not torch.cuda.is_available():
        return torch.device("cpu")
    return torch.device("cuda", local_rank())


def autocast(device: torch.device, enabled: bool) -> contextlib.AbstractContextManager:
    """bfloat16 autocast on CUDA (no loss scaling needed); a no-op on the CPU."""
    if device.type == "cuda" and enabled:
        return torch.autocast("cuda", dtype=torch.bfloat16)
    return contextlib.nullcontext()


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
