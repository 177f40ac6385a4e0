"""The rule that names the champion among the evaluated variants."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

# The cost each preference minimises, a column of the evaluation report. Latency is
# taken at batch 1: the registered model answers requests one image at a time.
COST_COLUMN = {"size": "size_bytes", "latency": "latency_b1_p50_ms"}


def choose_champion(rows: Sequence[dict[str, Any]], *, prefer: str, max_accuracy_drop: float,
                    baseline: str = "finetuned") -> dict[str, Any]:
    """The cheapest variant (by ``prefer``) whose accuracy is within ``max_accuracy_drop``
    of the ``baseline`` variant's; ties go to the more accurate one.

    Returns the decision: ``champion``, ``rule``, ``baseline_accuracy``,
    ``accuracy_floor``, ``cost_column`` and ``eligible`` (variant names).
    """
    by_name = {row["variant"]: row for row in rows}
    if baseline not in by_name:
        raise ValueError(f"the baseline variant {baseline!r} is not among "
                         f"{sorted(by_name)}")
    if prefer not in COST_COLUMN:
        raise ValueError(f"prefer must be one of {sorted(COST_COLUMN)}, got {prefer!r}")
    column = COST_COLUMN[prefer]
    floor = by_name[baseline]["accuracy"] - max_accuracy_drop
    eligible = [row for row in rows if row["accuracy"] >= floor - 1e-12]
    champion = min(eligible, key=lambda row: (row[column], -row["accuracy"]))
    return {
        "champion": champion["variant"],
        "rule": f"smallest {column} among variants with accuracy >= {baseline} accuracy "
                f"- {max_accuracy_drop:g}",
        "baseline_accuracy": float(by_name[baseline]["accuracy"]),
        "accuracy_floor": float(floor),
        "cost_column": column,
        "eligible": [row["variant"] for row in eligible],
    }
