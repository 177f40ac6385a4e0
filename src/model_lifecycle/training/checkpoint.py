"""Self-describing checkpoints: model, optimiser, epoch, history, best state and config."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import torch


def save_checkpoint(path: Path, state: dict[str, Any]) -> None:
    """Write ``state`` atomically (a temporary file of this process, then rename: two
    runs writing one path never share the temporary file)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f"{path.name}.tmp-{os.getpid()}")
    try:
        torch.save(state, tmp)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def load_checkpoint(path: Path) -> dict[str, Any] | None:
    """The checkpoint at ``path``, or None when there is none. Tensors and plain
    Python values only (``weights_only``): a checkpoint cannot run code."""
    if not path.exists():
        return None
    return torch.load(path, map_location="cpu", weights_only=True)
