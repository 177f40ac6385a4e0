"""The champion rule: the cheapest variant within the allowed accuracy drop."""

from __future__ import annotations

import pytest

from model_lifecycle.serving.champion import choose_champion


def _row(variant, accuracy, size, latency):
    return {"variant": variant, "accuracy": accuracy, "size_bytes": size,
            "latency_b1_p50_ms": latency}


ROWS = [_row("finetuned", 0.950, 4000, 2.0), _row("pruned", 0.945, 2000, 1.2),
        _row("quantized", 0.948, 1000, 0.9), _row("distilled", 0.930, 500, 0.5)]


def test_smallest_within_the_drop_wins():
    decision = choose_champion(ROWS, prefer="size", max_accuracy_drop=0.01)
    assert decision["champion"] == "quantized"  # distilled is smaller but 2 points down
    assert decision["eligible"] == ["finetuned", "pruned", "quantized"]
    assert decision["accuracy_floor"] == pytest.approx(0.94)
    assert decision["cost_column"] == "size_bytes"


def test_a_wider_allowance_or_latency_changes_the_answer():
    assert choose_champion(ROWS, prefer="size", max_accuracy_drop=0.03)["champion"] \
        == "distilled"
    rows = [*ROWS[:2], _row("quantized", 0.948, 1000, 1.5)]
    assert choose_champion(rows, prefer="latency", max_accuracy_drop=0.01)["champion"] \
        == "pruned"


def test_the_baseline_stays_champion_when_every_variant_loses_too_much():
    assert choose_champion(ROWS, prefer="size", max_accuracy_drop=0.0)["champion"] \
        == "finetuned"


def test_ties_go_to_the_more_accurate():
    rows = [_row("finetuned", 0.9, 100, 1.0), _row("a", 0.91, 50, 1.0),
            _row("b", 0.95, 50, 1.0)]
    assert choose_champion(rows, prefer="size", max_accuracy_drop=0.1)["champion"] == "b"


def test_missing_baseline_is_an_error():
    with pytest.raises(ValueError, match="baseline variant 'finetuned'"):
        choose_champion(ROWS[1:], prefer="size", max_accuracy_drop=0.01)
