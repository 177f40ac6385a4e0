"""Quality metrics, calibration and the Pareto front, on numbers small enough to check by hand."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from model_lifecycle.evaluation.calibration import reliability
from model_lifecycle.evaluation.config import LatencyParams
from model_lifecycle.evaluation.cost import side_by_side_latencies_ms
from model_lifecycle.evaluation.metrics import classification_metrics
from model_lifecycle.evaluation.pareto import pareto_front

NAMES = ("a", "b", "c")


def test_classification_metrics_by_hand():
    labels = np.array([0, 0, 1, 1, 2, 2])
    probabilities = np.array([[.7, .2, .1], [.2, .5, .3], [.1, .8, .1],
                              [.1, .6, .3], [.3, .3, .4], [.5, .1, .4]])
    m = classification_metrics(labels, probabilities, NAMES, top_k=2)
    # predicted 0, 1, 1, 1, 2, 0: four of six right
    assert m["accuracy"] == pytest.approx(4 / 6)
    assert m["confusion_matrix"] == [[1, 1, 0], [0, 2, 0], [1, 0, 1]]
    # precision a 1/2, b 2/3, c 1/1; recall a 1/2, b 1, c 1/2
    assert m["precision_macro"] == pytest.approx((1 / 2 + 2 / 3 + 1) / 3)
    assert m["recall_macro"] == pytest.approx((1 / 2 + 1 + 1 / 2) / 3)
    assert m["per_class"]["b"]["recall"] == pytest.approx(1.0)
    # the true class is among the two most likely for every row but the last
    assert m["top2_accuracy"] == pytest.approx(5 / 6)


def test_top_k_covering_every_class_is_perfect_and_binary_works():
    labels = np.array([0, 1, 1])
    probabilities = np.array([[.9, .1], [.8, .2], [.3, .7]])
    m = classification_metrics(labels, probabilities, ("no", "yes"), top_k=1)
    assert m["top1_accuracy"] == pytest.approx(m["accuracy"]) == pytest.approx(2 / 3)
    assert classification_metrics(labels, probabilities, ("no", "yes"),
                                  top_k=5)["top5_accuracy"] == 1.0


def test_ece_matches_the_definition():
    rng = np.random.default_rng(0)
    probabilities = rng.dirichlet(np.ones(4), size=500)
    labels = rng.integers(0, 4, 500)
    out = reliability(labels, probabilities, bins=10)
    confidence, correct = probabilities.max(1), probabilities.argmax(1) == labels
    expected = 0.0
    for lower in np.arange(10) / 10:  # (lower, lower + 0.1]
        members = (confidence > lower) & (confidence <= lower + 0.1)
        if members.any():
            expected += members.mean() * abs(correct[members].mean()
                                             - confidence[members].mean())
    assert out["ece"] == pytest.approx(expected)
    assert sum(b["count"] for b in out["bins"]) == 500


def test_ece_extremes():
    labels = np.array([0, 1, 0, 1])
    sure_and_right = np.eye(2)[labels]
    assert reliability(labels, sure_and_right)["ece"] == pytest.approx(0.0)
    assert reliability(labels, np.eye(2)[1 - labels])["ece"] == pytest.approx(1.0)


def test_pareto_front():
    # (cost, accuracy): c is dominated by a (cheaper and better); d ties b on cost, worse
    costs = [1.0, 2.0, 3.0, 2.0]
    accuracies = [0.90, 0.95, 0.85, 0.94]
    assert pareto_front(costs, accuracies) == [True, True, False, False]
    assert pareto_front([1.0, 1.0], [0.9, 0.9]) == [True, True]  # equal points both stay


def test_variants_are_timed_in_turns_over_rounds_and_summarised_over_all_runs():
    calls = []

    class Recorder(torch.nn.Module):
        def __init__(self, name):
            super().__init__()
            self.name = name

        def forward(self, x):
            calls.append((self.name, len(x)))
            return x

    params = LatencyParams(batch_sizes=(1, 4), warmup=1, repeats=3, rounds=2)
    timed = side_by_side_latencies_ms({"a": Recorder("a"), "b": Recorder("b")},
                                      torch.rand(1, 3, 8, 8), params)
    turn = [(name, batch) for name in "ab" for batch in (1, 4) for _ in range(1 + 3)]
    assert calls == turn + turn  # a then b, twice: a slow spell cannot fall on one alone
    assert set(timed) == {"a", "b"} and set(timed["a"]) == {1, 4}
    assert 0 < timed["a"][4]["median"] <= timed["a"][4]["p95"]
