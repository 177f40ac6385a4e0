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


TRUST_ROWS = [
    {"variant": "finetuned", "accuracy": 0.90, "size_bytes": 1000.0,
     "corruption_accuracy": 0.70, "attribution_drift": 0.0},
    {"variant": "pruned", "accuracy": 0.895, "size_bytes": 500.0,
     "corruption_accuracy": 0.60, "attribution_drift": 0.05},   # brittle
    {"variant": "quantized", "accuracy": 0.895, "size_bytes": 300.0,
     "corruption_accuracy": 0.69, "attribution_drift": 0.40},   # looks elsewhere
    {"variant": "distilled", "accuracy": 0.80, "size_bytes": 100.0,
     "corruption_accuracy": 0.69, "attribution_drift": 0.01},   # inaccurate
]


def test_the_robustness_budget_excludes_a_small_accurate_but_brittle_variant():
    plain = choose_champion(TRUST_ROWS, prefer="size", max_accuracy_drop=0.01)
    assert plain["champion"] == "quantized"
    drift = choose_champion(TRUST_ROWS, prefer="size", max_accuracy_drop=0.01,
                            max_robust_drop=0.02, max_attribution_drift=0.1)
    # quantized keeps accuracy and robustness but drifts; pruned is brittle
    assert drift["champion"] == "finetuned"
    assert drift["excluded"]["pruned"].startswith("corruption accuracy 0.6000 below")
    assert drift["excluded"]["quantized"].startswith("attribution drift 0.4000 above 0.1")
    assert drift["excluded"]["distilled"].startswith("accuracy 0.8000 below")
    assert drift["robust_floor"] == pytest.approx(0.68)
    robust_only = choose_champion(TRUST_ROWS, prefer="size", max_accuracy_drop=0.01,
                                  max_robust_drop=0.02)
    assert robust_only["champion"] == "quantized"
    assert set(robust_only["excluded"]) == {"pruned", "distilled"}
    assert "corruption accuracy >= finetuned corruption accuracy - 0.02" in robust_only["rule"]


def test_a_variant_without_the_number_a_budget_needs_is_excluded_by_it():
    rows = [*TRUST_ROWS[:1], {"variant": "pruned", "accuracy": 0.9, "size_bytes": 1.0,
                              "corruption_accuracy": float("nan")}]
    decision = choose_champion(rows, prefer="size", max_accuracy_drop=0.01,
                               max_robust_drop=0.5)
    assert decision["champion"] == "finetuned"
    assert "nan" in decision["excluded"]["pruned"]
