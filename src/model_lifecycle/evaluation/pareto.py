"""Which variants are worth keeping: the accuracy / cost Pareto front."""

from __future__ import annotations

from collections.abc import Sequence


def pareto_front(costs: Sequence[float], accuracies: Sequence[float]) -> list[bool]:
    """``True`` for each point that no other point dominates (as cheap or cheaper *and*
    as accurate or more, better in at least one)."""
    points = list(zip(costs, accuracies, strict=True))
    return [not any(c2 <= c and a2 >= a and (c2 < c or a2 > a) for c2, a2 in points)
            for c, a in points]
