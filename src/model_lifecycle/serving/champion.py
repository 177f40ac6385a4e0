"""The rule that names the champion among the evaluated variants."""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

# The cost each preference minimises, a column of the evaluation report. Latency is
# taken at batch 1: the registered model answers requests one image at a time.
COST_COLUMN = {"size": "size_bytes", "latency": "latency_b1_p50_ms"}


def choose_champion(rows: Sequence[dict[str, Any]], *, prefer: str, max_accuracy_drop: float,
                    max_robust_drop: float | None = None,
                    max_attribution_drift: float | None = None,
                    baseline: str = "finetuned") -> dict[str, Any]:
    """The cheapest variant (by ``prefer``) that keeps to every budget; ties go to the
    more accurate one. The budgets: accuracy within ``max_accuracy_drop`` of the
    ``baseline`` variant's; mean corruption accuracy (``corruption_accuracy``) within
    ``max_robust_drop`` of the baseline's; ``attribution_drift`` at most
    ``max_attribution_drift``. A budget set to None is not checked; a variant whose
    report lacks the number a budget needs is excluded by it.

    Returns the decision: ``champion``, ``rule``, ``baseline_accuracy``,
    ``accuracy_floor``, ``robust_floor``, ``cost_column``, ``eligible`` (variant names)
    and ``excluded`` (variant → the budget it broke, with its number).
    """
    by_name = {row["variant"]: row for row in rows}
    if baseline not in by_name:
        raise ValueError(f"the baseline variant {baseline!r} is not among "
                         f"{sorted(by_name)}")
    if prefer not in COST_COLUMN:
        raise ValueError(f"prefer must be one of {sorted(COST_COLUMN)}, got {prefer!r}")
    column = COST_COLUMN[prefer]
    reference = by_name[baseline]
    floor = reference["accuracy"] - max_accuracy_drop
    robust_floor = (None if max_robust_drop is None
                    else _number(reference, "corruption_accuracy") - max_robust_drop)
    excluded = {}
    for row in rows:
        reason = _broken_budget(row, floor, robust_floor, max_attribution_drift)
        if reason and row["variant"] != baseline:
            excluded[row["variant"]] = reason
    eligible = [row for row in rows if row["variant"] not in excluded]
    champion = min(eligible, key=lambda row: (row[column], -row["accuracy"]))
    rule = (f"smallest {column} among variants with accuracy >= {baseline} accuracy "
            f"- {max_accuracy_drop:g}")
    if max_robust_drop is not None:
        rule += (f", corruption accuracy >= {baseline} corruption accuracy "
                 f"- {max_robust_drop:g}")
    if max_attribution_drift is not None:
        rule += f", attribution drift <= {max_attribution_drift:g}"
    return {
        "champion": champion["variant"],
        "rule": rule,
        "baseline_accuracy": float(reference["accuracy"]),
        "accuracy_floor": float(floor),
        "robust_floor": None if robust_floor is None else float(robust_floor),
        "cost_column": column,
        "eligible": [row["variant"] for row in eligible],
        "excluded": excluded,
    }


def _broken_budget(row: dict[str, Any], floor: float, robust_floor: float | None,
                   max_drift: float | None) -> str | None:
    """The first budget ``row`` breaks, said with its number; None when it keeps all."""
    if row["accuracy"] < floor - 1e-12:
        return f"accuracy {row['accuracy']:.4f} below the floor {floor:.4f}"
    if robust_floor is not None:
        value = _number(row, "corruption_accuracy")
        if math.isnan(value) or value < robust_floor - 1e-12:
            return f"corruption accuracy {value:.4f} below the floor {robust_floor:.4f}"
    if max_drift is not None:
        value = _number(row, "attribution_drift")
        if math.isnan(value) or value > max_drift + 1e-12:
            return f"attribution drift {value:.4f} above {max_drift:g}"
    return None


def _number(row: dict[str, Any], key: str) -> float:
    value = row.get(key)
    return float("nan") if value is None else float(value)
