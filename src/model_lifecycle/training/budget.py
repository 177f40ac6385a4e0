"""Fit a training schedule into a time budget: "train as well as you can in N seconds".

A stage with ``budget_seconds`` set trains two throwaway copies of its model for one
epoch each on a slice of its training images (the first pays one-off start-up costs;
the second measures training images per second of wall time, the seconds one
evaluation takes, and what a run costs besides its epochs). The epoch count,
fractional so that the last pass stops part-way, is then what the time left buys,
evaluations every ``eval_every`` epochs and the final one included. The warm-up counts
against the budget.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol, TypeVar

import numpy as np

from model_lifecycle.errors import LifecycleError
from model_lifecycle.training.loop import Deadline

P = TypeVar("P")  # a stage's parameter model

log = logging.getLogger(__name__)

WARMUP_IMAGES = 7680  # images of the measuring warm-up epoch (fewer when there are fewer)
MARGIN = 0.98  # share of the time left that the schedule is planned to fill


def trial_settings(params: P, **update: object) -> P:
    """``params`` for a timed trial of the warm-up: one epoch, no budget, and no
    learning-rate warm-up (a trial's steps are timed, not learnt from; the stage's warm-up
    would span the whole trial, which the loop names as a mistake)."""
    schedule = params.schedule.model_copy(  # type: ignore[attr-defined]
        update={"warmup_epochs": 0.0, "warmup_fraction": None})
    return params.model_copy(  # type: ignore[attr-defined]
        update={"epochs": 1, "budget_seconds": None, "schedule": schedule, **update})


class Measured(Protocol):  # what a trial reports (a FitResult)
    images_per_s: float
    evaluations: int
    eval_seconds: float


# trial(n_images) trains a throwaway copy for one epoch on n_images, evaluating after it
Trial = Callable[[int], Measured]


@dataclass(frozen=True)
class BudgetPlan:
    epochs: float  # planned passes over the training images (fractional)
    images_per_s: float  # training throughput measured by the warm-up
    warmup_seconds: float  # spent measuring it
    setup_seconds: float  # what a run costs besides its epochs and evaluations
    eval_seconds: float  # one evaluation

    def apply(self, params: P, start: float) -> tuple[P, Deadline]:
        """``params`` (a stage's, with ``budget_seconds``) with the planned epochs, and the
        deadline ``fit`` keeps: ``budget_seconds`` after ``start``. The epochs are an
        estimate from the warm-up, so the deadline may extend them: a warm-up slowed by
        another job would otherwise leave the rest of the budget unused."""
        return (params.model_copy(update={"epochs": self.epochs}),
                Deadline(at=start + params.budget_seconds, eval_seconds=self.eval_seconds,
                         extend=True))


def plan_epochs(budget_seconds: float, train_images: int, trial: Trial, *, key: str,
                eval_every: int = 1, clock: Callable[[], float] = time.perf_counter
                ) -> BudgetPlan:
    """The fractional epoch count over ``train_images`` whose schedule ends inside
    ``budget_seconds``, counted from now (the warm-up included). ``key`` names the
    parameter in errors, e.g. ``finetune.budget_seconds``."""
    start = clock()
    measured = max(1, min(train_images, WARMUP_IMAGES))
    trial(max(1, measured // 3))  # one-off costs: thread pools, allocator, first kernels
    tic = clock()
    result = trial(measured)
    run_seconds = clock() - tic
    rate = result.images_per_s
    per_eval = result.eval_seconds / max(1, result.evaluations)
    setup = max(0.0, run_seconds - measured / rate - result.eval_seconds)
    spent = clock() - start
    # the last epoch is always evaluated; the others every `eval_every`
    left = budget_seconds - spent - setup - per_eval
    per_epoch = train_images / rate + per_eval / eval_every
    if left <= 0:
        raise LifecycleError(
            f"{key} = {budget_seconds:g} is used up by the warm-up that measures the "
            f"training speed ({spent:.1f} s, plus {setup + per_eval:.1f} s of set-up and "
            f"evaluation per run): raise it above "
            f"{math.ceil(spent + setup + per_eval + per_epoch)} s or set epochs instead.")
    epochs = MARGIN * left / per_epoch
    log.info("%s = %g: %.0f training images/s and %.2f s per evaluation in a %.1f-s "
             "warm-up, %.1f s of set-up: %.2f epochs", key, budget_seconds, rate, per_eval,
             spent, setup, epochs)
    return BudgetPlan(epochs=epochs, images_per_s=rate, warmup_seconds=spent,
                      setup_seconds=setup, eval_seconds=per_eval)


def warmup_sample(indices: np.ndarray, n_images: int, seed: int) -> np.ndarray:
    """``n_images`` of ``indices`` drawn with ``seed`` (sorted): a trial's training images,
    all classes mixed (the indices themselves are often grouped by class)."""
    return np.sort(np.random.default_rng(seed).permutation(indices)[:n_images])
