"""Learning-rate schedules as pure functions of the step."""

from __future__ import annotations

import math


def learning_rate(step: int, total_steps: int, *, base_lr: float, warmup_steps: int,
                  kind: str = "cosine") -> float:
    """The learning rate at ``step`` (0-based) of ``total_steps``.

    - ``cosine``: linear warm-up from 0 to ``base_lr``, then half a cosine down to 0.
    - ``onecycle``: Smith & Topin 2019 as torch's OneCycleLR does it (cosine both ways):
      from ``base_lr``/25 up to ``base_lr`` over ``warmup_steps``, then down to
      ``base_lr``/25/1e4.
    - ``constant``: linear warm-up, then ``base_lr``.
    """
    if not 0 <= step < total_steps:
        raise ValueError(f"step {step} outside [0, {total_steps})")
    warmup_steps = min(warmup_steps, total_steps - 1)
    if kind == "onecycle":
        start, end = base_lr / 25, base_lr / 25 / 1e4
        if step < warmup_steps:
            return _cosine(start, base_lr, step / warmup_steps)
        return _cosine(base_lr, end, (step - warmup_steps) / max(1, total_steps - 1 - warmup_steps))
    if step < warmup_steps:
        return base_lr * (step + 1) / (warmup_steps + 1)
    if kind == "constant":
        return base_lr
    if kind == "cosine":
        progress = (step - warmup_steps) / max(1, total_steps - warmup_steps)
        return _cosine(base_lr, 0.0, progress)
    raise ValueError(f"unknown schedule {kind!r}")


def _cosine(start: float, end: float, fraction: float) -> float:
    return end + (start - end) * (1 + math.cos(math.pi * fraction)) / 2
