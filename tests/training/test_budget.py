"""``budget_seconds``: the epoch count that fills a time budget, planned from a measured
warm-up, and the stages that use it."""

import math

import numpy as np
import pytest
import torch

from model_lifecycle.augment.config import SupervisedPolicy, ViewPolicy
from model_lifecycle.errors import LifecycleError
from model_lifecycle.models import build_model
from model_lifecycle.training.budget import MARGIN, plan_epochs, trial_settings
from model_lifecycle.training.config import (
    FinetuneParams,
    PretrainParams,
    RuntimeParams,
    ScheduleParams,
)
from model_lifecycle.training.finetune import finetune
from model_lifecycle.training.loop import FitResult
from model_lifecycle.training.pretrain import pretrain

CPU = torch.device("cpu")


class FakeClock:
    """A clock the fake trials advance: images / rate seconds of training, a fixed
    set-up cost per run and one evaluation."""

    def __init__(self, rate: float, setup: float, evaluation: float = 0.0) -> None:
        self.now, self.rate, self.setup, self.evaluation = 0.0, rate, setup, evaluation
        self.trials = []

    def __call__(self) -> float:
        return self.now

    def trial(self, n_images: int) -> FitResult:
        self.trials.append(n_images)
        self.now += self.setup + n_images / self.rate + self.evaluation
        return FitResult(images_per_s=self.rate, evaluations=1, eval_seconds=self.evaluation)


def test_the_plan_fills_what_the_warm_up_leaves():
    clock = FakeClock(rate=1000.0, setup=2.0)
    plan = plan_epochs(600, 40_000, clock.trial, key="finetune.budget_seconds", clock=clock)
    assert clock.trials == [2560, 7680]  # a third of the measured slice first
    assert plan.images_per_s == 1000.0
    assert plan.setup_seconds == pytest.approx(2.0)
    assert plan.warmup_seconds == pytest.approx(2.0 + 2.56 + 2.0 + 7.68)
    left = 600 - plan.warmup_seconds - 2.0
    assert plan.epochs == pytest.approx(MARGIN * left * 1000 / 40_000)
    # what the planned run then costs ends inside the budget
    assert plan.warmup_seconds + 2.0 + plan.epochs * 40_000 / 1000 <= 600
    # an estimate: the run may train more epochs when it turns out faster
    params, deadline = plan.apply(FinetuneParams(budget_seconds=600), start=10.0)
    assert params.epochs == plan.epochs and deadline.at == 610.0 and deadline.extend


def test_evaluations_are_planned_for_too():
    # 1 s per evaluation, every 2nd epoch and after the last: 40 s per epoch of training
    clock = FakeClock(rate=1000.0, setup=0.0, evaluation=1.0)
    plan = plan_epochs(600, 40_000, clock.trial, key="k", eval_every=2, clock=clock)
    assert plan.eval_seconds == pytest.approx(1.0)
    left = 600 - plan.warmup_seconds - 1.0
    assert plan.epochs == pytest.approx(MARGIN * left / (40 + 0.5))
    evaluations = math.ceil(plan.epochs) // 2 + 1
    assert plan.warmup_seconds + plan.epochs * 40 + evaluations <= 600


def test_tiny_data_warms_up_on_what_there_is():
    clock = FakeClock(rate=100.0, setup=0.5)
    plan = plan_epochs(30, 60, clock.trial, key="pretrain.budget_seconds", clock=clock)
    assert clock.trials == [20, 60]
    assert plan.epochs > 1


def test_a_budget_the_warm_up_uses_up_is_one_sentence():
    clock = FakeClock(rate=100.0, setup=3.0)
    with pytest.raises(LifecycleError, match=r"^finetune.budget_seconds = 10 is used up by "
                                             r"the warm-up .* raise it above \d+ s"):
        plan_epochs(10, 5000, clock.trial, key="finetune.budget_seconds", clock=clock)


def _data(n=600, seed=0):
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, 3, n)
    images = rng.integers(0, 60, (n, 1, 8, 8), dtype=np.uint8)
    images[np.arange(n), 0, labels * 2, :] = 255
    splits = {"train_labeled": np.arange(0, 400), "train_unlabeled": np.arange(0, 0),
              "val": np.arange(400, 500), "test": np.arange(500, 600)}
    return images, labels, splits


@pytest.mark.timing
def test_finetune_with_a_budget_ends_its_schedule_inside_it():
    images, labels, splits = _data()
    torch.manual_seed(0)
    model = build_model("small_cnn", 3, 1, width=4)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    params = FinetuneParams(init="scratch", epochs=1, budget_seconds=6, batch_size=32,
                            schedule=ScheduleParams(kind="onecycle", warmup_epochs=None,
                                                    warmup_fraction=0.25),
                            eval_every=1000)
    result, scores = finetune(model, images, labels, splits, SupervisedPolicy(), params,
                              RuntimeParams(num_threads=1), CPU)
    # the schedule ends inside the budget; restoring the kept epoch's weights comes after
    # it (tens of milliseconds: 6.06 s measured once on 2 idle cores)
    assert scores["train_seconds"] <= 6.0 * 1.05
    assert scores["epochs"] != 1  # the budget, not `epochs`, set the count
    assert result.epochs_run == math.ceil(scores["epochs"])  # the last pass part-way
    assert any(not torch.equal(before[k], v) for k, v in model.state_dict().items())


@pytest.mark.timing
def test_pretrain_with_a_budget_reports_its_epochs_and_seconds():
    images, labels, splits = _data(300)
    splits = {"train_labeled": np.arange(0, 100), "train_unlabeled": np.arange(100, 200),
              "val": np.arange(200, 300)}
    model = build_model("small_cnn", 3, 1, width=4)
    # epochs is ignored with a budget: 1,000 would take minutes, the plan fits 6 s (one
    # epoch or more however slow the machine: the count need not be fractional)
    params = PretrainParams(epochs=1000, budget_seconds=6, batch_size=64, eval_every=1000,
                            hidden_dim=16, projection_dim=8,
                            schedule=ScheduleParams(warmup_epochs=None, warmup_fraction=0.1))
    _result, quality = pretrain(model, images, labels, splits, ViewPolicy(), params,
                                RuntimeParams(num_threads=1), CPU)
    # the schedule fills the budget (the plan may grow to it); the last epoch's wrap-up
    # may end a hair after it (6.0004 s measured once), as in the fine-tuning test above
    assert quality["train_seconds"] <= 6.0 * 1.05
    assert 0 < quality["epochs"] < 1000
    assert 0 <= quality["knn_accuracy"] <= 1


def test_a_trial_epoch_has_no_learning_rate_warm_up():
    """The base recipe's 4 warm-up epochs would span a one-epoch trial, which the loop
    names as a mistake (the budgeted run's own schedule keeps them)."""
    params = FinetuneParams(budget_seconds=60, epochs=40, checkpoint="c.pt",
                            schedule=ScheduleParams(warmup_epochs=4))
    trial = trial_settings(params, checkpoint=None)
    assert (trial.epochs, trial.budget_seconds, trial.checkpoint) == (1, None, None)
    assert trial.schedule.warmup_steps(10, 10) == 0 and trial.schedule.kind == "cosine"
    assert params.schedule.warmup_steps(400, 10) == 40  # the run's own: untouched


def test_a_schedule_takes_one_kind_of_warm_up():
    with pytest.raises(ValueError, match="exactly one of schedule.warmup_epochs and "
                                         "schedule.warmup_fraction"):
        ScheduleParams(warmup_epochs=1, warmup_fraction=0.2)
    assert ScheduleParams(warmup_epochs=None, warmup_fraction=0.25).warmup_steps(200, 10) == 50
    assert ScheduleParams(warmup_epochs=2).warmup_steps(200, 10) == 20


@pytest.mark.timing
def test_a_deadline_shortens_a_run_that_is_slower_than_planned():
    import time  # noqa: PLC0415

    from model_lifecycle.training.config import OptimizerParams  # noqa: PLC0415
    from model_lifecycle.training.data import BatchStream  # noqa: PLC0415
    from model_lifecycle.training.loop import Deadline, fit  # noqa: PLC0415

    images, labels, _ = _data(160)
    model = build_model("small_cnn", 3, 1, width=2)
    stream = BatchStream(images, labels, np.arange(160), batch_size=16, augment=None)

    def slow_loss(module, views, targets):  # 10 steps of at least 20 ms per epoch
        time.sleep(0.02)
        return torch.nn.functional.cross_entropy(module(views[0]), targets), {}

    start = time.perf_counter()
    result = fit(model, slow_loss, stream, epochs=40, optimizer=OptimizerParams(lr=0.1),
                 schedule=ScheduleParams(kind="cosine", warmup_epochs=0),
                 deadline=Deadline(at=start + 2.0))
    elapsed = time.perf_counter() - start
    epoch_seconds = elapsed / result.epochs_trained
    assert result.epochs_trained < 40 / 2  # planned 40 epochs: at least 8 s
    assert elapsed < 2.0 + epoch_seconds  # the epoch under way may end past it, no more
    # the learning rate follows the shorter schedule down to (nearly) zero
    last_lr = result.history["lr"][-1][1]
    assert last_lr < 0.1 * 0.1


def test_a_deadline_keeps_a_reserve_for_steps_slower_than_the_mean(monkeypatch):
    from model_lifecycle.training import loop  # noqa: PLC0415

    monkeypatch.setattr(loop.time, "perf_counter", lambda: 100.0)
    plan = loop._Plan(total_steps=1_000, steps_per_epoch=10)
    # 1 s left at 10 ms a step: 100 steps would end exactly on the deadline
    plan.keep(loop.Deadline(at=101.0), done=20, step_seconds=0.01, eval_seconds=0.0,
              eval_every=1, name="test")
    left_steps = plan.total_steps - 20
    assert left_steps < 100 - 2  # two steps' time and more are kept back …
    assert left_steps >= 95  # … but not much more: 1% of the time left


def test_a_run_that_slows_down_still_ends_before_its_deadline(monkeypatch):
    """Steps that grow slower epoch after epoch (a CPU that throttles, a machine that
    gets busier): planned at the run's mean step, the last epoch overran the deadline
    (31.2 s of 30); planned at the latest epochs' pace, with no step started that would
    end past the deadline, it ends inside it."""
    from model_lifecycle.training import loop  # noqa: PLC0415
    from model_lifecycle.training.config import OptimizerParams  # noqa: PLC0415
    from model_lifecycle.training.data import BatchStream  # noqa: PLC0415

    clock = {"now": 0.0, "steps": 0}
    monkeypatch.setattr(loop.time, "perf_counter", lambda: clock["now"])
    images, labels, _ = _data(160)
    model = build_model("small_cnn", 3, 1, width=2)
    stream = BatchStream(images, labels, np.arange(160), batch_size=16, augment=None)

    def slowing_loss(module, views, targets):  # 10 steps an epoch, each 2% slower
        clock["now"] += 0.1 * 1.02 ** clock["steps"]
        clock["steps"] += 1
        return torch.nn.functional.cross_entropy(module(views[0]), targets), {}

    result = loop.fit(model, slowing_loss, stream, epochs=100, optimizer=OptimizerParams(lr=0.1),
                      schedule=ScheduleParams(kind="cosine", warmup_epochs=0),
                      deadline=loop.Deadline(at=30.0))
    assert result.epochs_trained < 100  # the deadline shortened the run …
    assert 25.0 < clock["now"] <= 30.0  # … to end inside it, not far before


def test_a_run_slowed_by_another_job_gets_its_steps_back(monkeypatch):
    """One slow epoch (another job on the cores) shortens the schedule; when the steps
    are fast again the run takes the time back and still ends inside the deadline. Past
    the steps first planned only when the deadline may extend them (a budget's plan,
    measured on a warm-up that another job may have slowed): then the run fills the
    time."""
    from model_lifecycle.training import loop  # noqa: PLC0415
    from model_lifecycle.training.config import OptimizerParams  # noqa: PLC0415
    from model_lifecycle.training.data import BatchStream  # noqa: PLC0415

    images, labels, _ = _data(160)
    stream = BatchStream(images, labels, np.arange(160), batch_size=16, augment=None)

    def run(epochs: float, deadline: float, extend: bool = False) -> tuple[FitResult, float]:
        clock = {"now": 0.0, "steps": 0}
        monkeypatch.setattr(loop.time, "perf_counter", lambda: clock["now"])

        def loss(module, views, targets):  # the first epoch's 10 steps 1 s each, then 0.1 s
            clock["now"] += 1.0 if clock["steps"] < 10 else 0.1
            clock["steps"] += 1
            return torch.nn.functional.cross_entropy(module(views[0]), targets), {}

        result = loop.fit(build_model("small_cnn", 3, 1, width=2), loss, stream,
                          epochs=epochs, optimizer=OptimizerParams(lr=0.1),
                          schedule=ScheduleParams(kind="cosine", warmup_epochs=0),
                          deadline=loop.Deadline(at=deadline, extend=extend))
        return result, clock["now"]

    result, ended = run(epochs=100, deadline=30.0)
    assert 28.0 < ended <= 30.0  # 20 s of fast steps after the slow epoch, used
    assert result.epochs_trained > 15
    result, ended = run(epochs=12, deadline=30.0)  # 10 + 11 × 1 s: more time than steps
    assert result.epochs_trained == 12 and ended == pytest.approx(21.0)
    result, ended = run(epochs=12, deadline=30.0, extend=True)  # … which it then uses
    assert result.epochs_trained > 18 and 28.0 < ended <= 30.0
    assert result.history["lr"][-1][1] < 0.1 * 0.1  # the longer schedule's end, annealed
