"""Self-describing checkpoints: model, optimiser, epoch, history, best state and config."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any


def save_checkpoint(path: Path, state: dict[str, Any]) -> None:
    """Write ``state`` atomically (a temporary file of this process, then rename: two
    runs writing one path never share the temporary file)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    for stale in path.parent.glob(f"{path.name}.tmp-*"):  # left by a killed run
        pid = stale.name.rpartition("-")[2]
        if pid.isdigit() and not process_alive(int(pid)):
            stale.unlink(missing_ok=True)
    import torch  # noqa: PLC0415 - the hooks import this module's process_alive, torch-free

    tmp = path.with_name(f"{path.name}.tmp-{os.getpid()}")
    try:
        with open(tmp, "wb") as handle:  # opened here: a refusal is an OSError, not torch's
            torch.save(state, handle)     # RuntimeError
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def load_checkpoint(path: Path) -> dict[str, Any] | None:
    """The checkpoint at ``path``, or None when there is none. Tensors and plain
    Python values only (``weights_only``): a checkpoint cannot run code."""
    if not path.exists():
        return None
    import torch  # noqa: PLC0415

    return torch.load(path, map_location="cpu", weights_only=True)


def process_alive(pid: int) -> bool:
    """Whether a process ``pid`` runs on this host (another user's counts)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's process: alive
        return True
    return True
