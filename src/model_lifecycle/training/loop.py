"""``fit``: the one training loop every training node uses."""

from __future__ import annotations

import contextlib
import copy
import hashlib
import logging
import math
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.distributed as dist
from torch import nn
from torch.nn.parallel import DistributedDataParallel
from torch.optim.swa_utils import AveragedModel, get_ema_multi_avg_fn

from model_lifecycle.errors import LifecycleError
from model_lifecycle.training.checkpoint import load_checkpoint, save_checkpoint
from model_lifecycle.training.config import OptimizerParams, ScheduleParams
from model_lifecycle.training.data import BatchStream
from model_lifecycle.training.device import autocast, compiled, is_main_process, world_size
from model_lifecycle.training.optim import build_optimizer
from model_lifecycle.training.schedule import learning_rate

log = logging.getLogger(__name__)

# loss_fn(model, views, labels) -> (loss, {metric: value}) for one batch
LossFn = Callable[[nn.Module, list[torch.Tensor], torch.Tensor],
                  tuple[torch.Tensor, dict[str, float]]]
# evaluate(model, epoch) -> {metric: value}, run after every epoch (may return {})
Evaluate = Callable[[nn.Module, int], dict[str, float]]


@dataclass
class FitResult:
    history: dict[str, list[list[float]]] = field(default_factory=dict)  # metric → [[epoch, value]]
    best_epoch: int = -1
    best_value: float | None = None
    epochs_run: int = 0
    # training images per second of wall time, every per-epoch cost but evaluation
    # included (bookkeeping, checkpoints): what a time budget plans with
    images_per_s: float = 0.0
    evaluations: int = 0  # epochs whose evaluation returned metrics
    eval_seconds: float = 0.0  # spent in those evaluations
    epochs_trained: float = 0.0  # optimizer steps taken / steps per epoch


@dataclass(frozen=True)
class Deadline:
    """When training must be over (a ``time.perf_counter()`` value), what one
    evaluation is expected to cost until one has been measured, and whether the
    schedule may grow past the epochs first planned (``extend``: they were planned from a
    measured warm-up, an estimate that the run may beat; otherwise they are the epochs
    asked for, the most the run trains)."""

    at: float
    eval_seconds: float = 0.0
    extend: bool = False


def epoch_count(epochs: float, steps_per_epoch: int) -> tuple[int, int]:
    """(passes over the data, optimizer steps) for ``epochs``, which may be fractional:
    the last pass then stops part-way (as airbench trains for 9.9 epochs), so a time
    budget can be filled exactly."""
    steps = max(1, round(epochs * steps_per_epoch))
    return math.ceil(steps / steps_per_epoch), steps


def fit(model: nn.Module, loss_fn: LossFn, data: BatchStream, *, epochs: float,
        optimizer: OptimizerParams, schedule: ScheduleParams,
        evaluate: Evaluate | None = None, monitor: str | None = None,
        patience: int | None = None, clip_grad_norm: float | None = None,
        ema_decay: float | None = None, device: torch.device | None = None,
        mixed_precision: bool = True, cpu_bfloat16: bool = False,
        compile_model: bool = False, eval_every: int = 1,
        deadline: Deadline | None = None,
        checkpoint: Path | None = None, resume: bool = False,
        config: dict[str, Any] | None = None, seed: int = 0, name: str = "train"
        ) -> FitResult:
    """Train ``model`` in place for ``epochs`` over ``data`` (fractional: the last pass
    stops part-way, see ``epoch_count``).

    After each epoch: ``evaluate`` (if given; every ``eval_every`` epochs and after the
    last), early stopping on ``monitor`` (higher is better) after ``patience`` epochs
    without improvement, a checkpoint (if given). With a ``deadline``, an epoch that
    finds the rest of the schedule would end after it shortens the schedule to what
    the time left buys (the learning-rate schedule follows the new length).
    At the end the model holds the weights of its best epoch on ``monitor`` (the last
    epoch without one). ``resume`` continues from ``checkpoint`` when it exists.

    ``mixed_precision``: the training steps run under bfloat16 autocast on CUDA;
    ``cpu_bfloat16``: on the CPU too, where it has bfloat16 instructions (see
    :func:`~model_lifecycle.training.device.cpu_bfloat16`). Weights, optimizer state and
    evaluation stay float32.

    ``compile_model``: the training steps run through ``torch.compile`` of the model
    (sharing its weights; evaluation and the returned model stay eager), compiled on the
    first step.

    ``ema_decay`` keeps an exponential moving average of the weights (batch-norm
    statistics included), updated after every step; evaluation, model selection and
    the returned model then use the averaged weights.

    Inside a ``torch.distributed`` process group of more than one rank (see
    ``training/distributed.py``) the model trains wrapped in ``DistributedDataParallel``
    on each rank's shard of ``data``; after every epoch the buffers (batch-norm
    statistics) are copied from rank 0, the training metrics are averaged over the ranks,
    and rank 0 alone evaluates and hands its scores to the others, so that every rank
    keeps the same epoch and stops at the same time.
    """
    device = device or torch.device("cpu")
    distributed = world_size() > 1
    trained = _training_module(model, device, distributed=distributed,
                               compile_model=compile_model)
    opt = build_optimizer(model, optimizer)
    plan = _Plan(epoch_count(epochs, len(data))[1], len(data))
    warmup = schedule.warmup_steps(plan.total_steps, len(data))
    if 0 < plan.total_steps <= warmup:
        log.warning("%s: the warm-up (%d steps) is as long as the whole schedule (%d steps, "
                    "%.2f epochs): the learning rate rises to its peak and ends there, never "
                    "coming down; shorten schedule.warmup_epochs, or set "
                    "schedule.warmup_fraction instead (warmup_epochs: null)", name, warmup,
                    plan.total_steps, plan.total_steps / len(data))

    def lr_at(step: int) -> float:
        return learning_rate(step, plan.total_steps, base_lr=optimizer.lr,
                             warmup_steps=warmup, kind=schedule.kind)

    average = None if ema_decay is None else AveragedModel(
        model, multi_avg_fn=get_ema_multi_avg_fn(ema_decay), use_buffers=True)
    scored = model if average is None else average.module  # what evaluation sees
    inputs = _inputs(model, data, seed)
    result, best_state, start_epoch = _start(checkpoint if resume else None, config, inputs,
                                             name, model, opt, average)

    seen_images, seen_seconds = 0, 0.0
    epoch = start_epoch - 1
    while (epoch := epoch + 1) < plan.passes:
        if patience is not None and epoch - result.best_epoch > patience and result.best_epoch >= 0:
            log.info("%s: early stop after epoch %d (best %s %.4f at epoch %d)", name, epoch,
                     monitor, result.best_value, result.best_epoch + 1)
            break
        tic = time.perf_counter()
        torch.manual_seed(seed * 1009 + epoch)  # anything drawing from the global RNG
        steps = min(len(data), plan.total_steps - epoch * len(data))
        epoch_metrics, taken = _train_epoch(
            trained, loss_fn, data, epoch, steps, opt, lr_at,
            autocast(device, mixed_precision, cpu=cpu_bfloat16), clip_grad_norm, average,
            stop_at=None if deadline is None or distributed else
            deadline.at - _eval_estimate(result, deadline))
        steps = plan.took(taken, of=steps, before=epoch * len(data), name=name)
        if distributed:
            epoch_metrics = _agree(model, scored, epoch_metrics, device)
        seconds = time.perf_counter() - tic
        seen_images += steps * data.batch_size
        result.epochs_trained = (epoch * len(data) + steps) / len(data)
        if deadline is not None:
            plan.after_epoch(deadline, seconds=seconds, steps=steps,
                             done=epoch * len(data) + steps,
                             eval_seconds=_eval_estimate(result, deadline),
                             eval_every=eval_every, name=name)
        due = (epoch + 1) % eval_every == 0 or epoch + 1 == plan.passes
        eval_seconds = _timed_evaluation(evaluate if due else None, scored, epoch,
                                         epoch_metrics, result, distributed=distributed)
        for key, value in epoch_metrics.items():
            result.history.setdefault(key, []).append([epoch, float(value)])
        result.epochs_run = epoch + 1
        value = epoch_metrics.get(monitor) if monitor else None
        if monitor is None or (value is not None and (result.best_value is None
                                                      or value > result.best_value)):
            result.best_epoch, result.best_value = epoch, value
            best_state = copy.deepcopy(scored.state_dict()) if monitor else None
        _progress(name, epoch, plan.passes, epoch_metrics, steps * data.batch_size / seconds,
                  seconds * (plan.passes - epoch - 1))
        if checkpoint is not None and is_main_process():
            _save(checkpoint, name, {
                "model": model.state_dict(), "optimizer": opt.state_dict(), "epoch": epoch,
                "result": vars(result), "best_state": best_state, "config": config or {},
                "inputs": inputs,
                "average": None if average is None else average.state_dict(),
            })
        seen_seconds += time.perf_counter() - tic - eval_seconds
        result.images_per_s = seen_images / max(seen_seconds, 1e-9)
    if best_state is not None:
        model.load_state_dict(best_state)
    elif average is not None:
        model.load_state_dict(average.module.state_dict())
    return result


def _training_module(model: nn.Module, device: torch.device, *, distributed: bool,
                     compile_model: bool) -> nn.Module:
    """What the training steps call: ``model``, wrapped in DDP inside a process group of
    several ranks, then compiled when asked (both share ``model``'s weights)."""
    trained = model if not distributed else DistributedDataParallel(
        model, device_ids=[device.index] if device.type == "cuda" else None)
    return compiled(trained) if compile_model else trained


# Settings a resumed run may change: the switch itself and where the checkpoint lives,
# another stage's settings kept in the same group (finetune.adversarial: the robust
# pipeline's), what only evaluation or the first epoch's start reads (test-time
# augmentation, how often val is checked, a weights file the checkpoint replaces), and
# the epochs a time budget plans anew in every run.
_RESUMABLE = ("resume", "checkpoint", "adversarial", "flip_tta", "shift_tta", "eval_every",
              "weights_path", "head_init")  # head_init: the start, which resuming replaces


def _refuse_other_settings(saved: dict[str, Any], current: dict[str, Any], checkpoint: Path,
                           name: str) -> None:
    """Refuse to continue a checkpoint written with other training settings (learning
    rate, epochs, architecture …): the run would silently be half one, half the other."""
    if not saved or not current:
        return  # a checkpoint of a version that did not record them, or a caller without
    skip = {*_RESUMABLE, *(("epochs",) if current.get("budget_seconds") else ()),
            # a budgeted run continued on its planned epochs, without a new budget
            *(("budget_seconds",) if saved.get("budget_seconds")
              and current.get("budget_seconds") is None else ())}
    old, new = _flat(saved), _flat(current)
    changed = [f"{name}.{key} {old.get(key)!r} → {new.get(key)!r}"
               for key in sorted(old.keys() | new.keys())
               if key.split(".")[0] not in skip and old.get(key) != new.get(key)]
    if changed:
        raise LifecycleError(
            f"Checkpoint {checkpoint} was written with other settings ("
            f"{', '.join(changed[:4])}{', …' if len(changed) > 4 else ''}): resume with "
            "the settings it was written with, delete it, or set resume: false.")


def _start(checkpoint: Path | None, config: dict[str, Any] | None, inputs: dict[str, Any],
           name: str, model: nn.Module, opt: torch.optim.Optimizer,
           average: AveragedModel | None) -> tuple[FitResult, dict | None, int]:
    """The result so far, the best state and the first epoch: a fresh start, or where the
    ``checkpoint`` to resume from left off."""
    saved = None if checkpoint is None else load_checkpoint(checkpoint)
    if saved is None:
        if checkpoint is not None:
            log.info("%s: no checkpoint at %s yet: training from the start", name, checkpoint)
        return FitResult(), None, 0
    _refuse_other_settings(saved.get("config") or {}, config or {}, checkpoint, name)
    _refuse_other_inputs(saved.get("inputs") or {}, inputs, checkpoint, name)
    result, best_state, start_epoch = _resume(saved, checkpoint, model, opt, average)
    log.info("%s: resuming from %s after epoch %d", name, checkpoint, start_epoch)
    if (config or {}).get("budget_seconds"):
        planned, now = (saved.get("config") or {}).get("epochs"), (config or {}).get("epochs")
        log.warning("%s: resumed under a time budget, which starts again in this run: the "
                    "epochs were planned anew (%s; the interrupted run planned %s), so the "
                    "learning-rate schedule does not continue the interrupted one; to "
                    "continue it instead, resume with budget_seconds: null and epochs: %s",
                    name, now, planned, planned)
    return result, best_state, start_epoch


def _save(checkpoint: Path, name: str, state: dict[str, Any]) -> None:
    try:
        save_checkpoint(checkpoint, state)
    except OSError as exc:
        raise LifecycleError(
            f"Cannot write the checkpoint {checkpoint} ({exc.strerror or exc}): set "
            f"{name.rsplit(maxsplit=1)[-1]}.checkpoint to a file this user can write, or "
            "to null."
        ) from None


def _inputs(model: nn.Module, data: BatchStream, seed: int) -> dict[str, Any]:
    """What a run trains from, beside its settings: the seed, which images (the training
    indices, the size of the set they index and, when a caller sets ``trained_images``,
    the images' fingerprint) and the model it starts from (the ``trained_from`` a caller
    sets: the pretrained encoder's ``model_id``)."""
    # a BatchStream's indices are a tensor, an episode stream's an array
    indices = np.asarray(getattr(data, "indices", ()), dtype=np.int64).tobytes()
    size = str(len(getattr(data, "images", ()))).encode()
    pixels = str(getattr(model, "trained_images", "")).encode()
    return {"seed": seed, "images": hashlib.sha256(indices + size + pixels).hexdigest()[:16],
            "start": getattr(model, "trained_from", None)}


def _refuse_other_inputs(saved: dict[str, Any], current: dict[str, Any], checkpoint: Path,
                         name: str) -> None:
    """Refuse to continue a checkpoint of a training that started from another model,
    other images or another seed: its epochs would be passed off as this run's."""
    what = {"seed": "runtime.seed", "images": "the training images",
            "start": "the model it starts from (a newer pretrained encoder)"}
    changed = [what[key] for key in what
               if key in saved and saved[key] != current.get(key)]
    if changed:
        raise LifecycleError(
            f"Checkpoint {checkpoint} continues a {name} of other inputs "
            f"({', '.join(changed)} changed since it was written): delete it, or set "
            "resume: false to train from the start.")


def _flat(tree: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in tree.items():
        if isinstance(value, dict):
            out.update(_flat(value, f"{prefix}{key}."))
        else:
            out[f"{prefix}{key}"] = value
    return out


def _resume(saved: dict[str, Any], checkpoint: Path, model: nn.Module,
            opt: torch.optim.Optimizer, average: AveragedModel | None
            ) -> tuple[FitResult, dict[str, torch.Tensor] | None, int]:
    """Load a checkpoint's model, optimizer and average; return its result so far, its
    best state and the epoch to continue from."""
    try:
        model.load_state_dict(saved["model"])
        opt.load_state_dict(saved["optimizer"])
    except (RuntimeError, ValueError, KeyError) as exc:
        raise LifecycleError(
            f"Checkpoint {checkpoint} was written by a different model or optimizer "
            f"setup ({str(exc).splitlines()[0]}): delete it, point `checkpoint` "
            "elsewhere or set resume: false.") from None
    if average is not None and saved.get("average") is not None:
        average.load_state_dict(saved["average"])  # else it restarts from these weights
    return FitResult(**saved["result"]), saved["best_state"], saved["epoch"] + 1


PACE_EPOCHS = 3  # a deadline plans the rest at the pace of this many latest epochs
RESERVE_STEPS = 2  # what a deadline keeps back for slower steps: two steps' time …
RESERVE_SHARE = 0.01  # … and 1% of the time left


@dataclass
class _Plan:
    """A run's optimizer steps, which a deadline may shorten while it runs (and lengthen
    again: past the steps first planned only when the deadline may ``extend`` them)."""

    total_steps: int
    steps_per_epoch: int
    planned_steps: int = field(init=False)  # the steps first planned (the cap, unless extended)
    recent: deque = field(default_factory=lambda: deque(maxlen=PACE_EPOCHS))

    def __post_init__(self) -> None:
        self.planned_steps = self.total_steps

    def took(self, taken: int, *, of: int, before: int, name: str) -> int:
        """``taken`` of the epoch's ``of`` steps, ``before`` steps in: fewer when the
        deadline came mid-epoch, which then ends the run there. Returns ``taken``."""
        if taken < of:
            log.info("%s: the deadline came %d steps before the end of the schedule: "
                     "stopped there", name, of - taken)
            self.total_steps = self.planned_steps = before + taken
        return taken

    def after_epoch(self, deadline: Deadline, *, seconds: float, steps: int, done: int,
                    eval_seconds: float, eval_every: int, name: str) -> None:
        """:meth:`keep` at the pace of the latest epochs (``seconds`` for ``steps`` in
        the one just trained), not the run's mean: steps that keep slowing down (a
        throttling CPU) overran a plan at the mean, and one slow epoch (another job on
        the cores) held it short for good; a few epochs, not one, so that an epoch's own
        noise does not move the plan."""
        self.recent.append((seconds, steps))
        pace = sum(t for t, _ in self.recent) / sum(n for _, n in self.recent)
        self.keep(deadline, done=done, step_seconds=pace, eval_seconds=eval_seconds,
                  eval_every=eval_every, name=name)

    @property
    def passes(self) -> int:
        return math.ceil(self.total_steps / self.steps_per_epoch)

    def keep(self, deadline: Deadline, *, done: int, step_seconds: float,
             eval_seconds: float, eval_every: int, name: str) -> None:
        """Fit the run, ``done`` steps in, to ``deadline.at``: as many of the planned
        steps as the time left buys for them and the evaluations among and after them.

        Steps are planned at ``step_seconds`` (the caller's estimate); the time left
        keeps a reserve of two steps and 1% for steps that run slower than that (a run
        of hundreds of tiny epochs overshot its 6-s budget by 3 ms without one). A run
        shortened by a slow stretch (another job on the cores) gets its steps back when
        it speeds up again. Past the plan only with ``deadline.extend``: a budget's
        warm-up that ran slow (a job sharing the cores for those seconds) planned too few
        epochs, and the run then fills the budget at the pace it keeps."""
        left = deadline.at - time.perf_counter() - eval_seconds  # the last evaluation
        left -= RESERVE_STEPS * step_seconds + RESERVE_SHARE * max(0.0, left)
        per_step = step_seconds + eval_seconds / (eval_every * self.steps_per_epoch)
        affordable = done + max(0, math.floor(left / per_step))
        fitted = max(done, affordable if deadline.extend
                     else min(affordable, self.planned_steps))
        if fitted == self.total_steps:
            return
        log.info("%s: %.2f epochs fit before the deadline instead of %.2f: the schedule "
                 "is %s", name, fitted / self.steps_per_epoch,
                 self.total_steps / self.steps_per_epoch,
                 "shortened to end in time" if fitted < self.total_steps
                 else "lengthened to fill the time")
        self.total_steps = fitted


def _eval_estimate(result: FitResult, deadline: Deadline) -> float:
    """Seconds one evaluation is expected to take: the run's mean so far, else the
    warm-up's."""
    return (result.eval_seconds / result.evaluations if result.evaluations
            else deadline.eval_seconds)


def _timed_evaluation(evaluate: Evaluate | None, model: nn.Module, epoch: int,
                      metrics: dict[str, float], result: FitResult, *,
                      distributed: bool = False) -> float:
    """Run ``evaluate`` into ``metrics``; count it in ``result`` when it measured
    something; return the seconds it took. ``distributed``: rank 0 evaluates and sends
    its scores to every rank."""
    if evaluate is None:
        return 0.0
    tic = time.perf_counter()
    checked = evaluate(model, epoch) if is_main_process() else None
    if distributed:
        shared = [checked]
        dist.broadcast_object_list(shared, src=0, device=_object_device())
        checked = shared[0]
    seconds = time.perf_counter() - tic
    if checked:
        result.evaluations += 1
        result.eval_seconds += seconds
    metrics.update(checked)
    return seconds


def _train_epoch(model: nn.Module, loss_fn: LossFn, data: BatchStream, epoch: int, steps: int,
                 opt: torch.optim.Optimizer, lr_at: Callable[[int], float],
                 precision: contextlib.AbstractContextManager,
                 clip_grad_norm: float | None, average: AveragedModel | None,
                 stop_at: float | None = None) -> tuple[dict[str, float], int]:
    """The first ``steps`` batches of one pass over ``data``, fewer when the next step,
    as long as the last, would end after ``stop_at`` (a deadline's last resort: the plan
    after each epoch keeps runs inside it, unless the last epoch runs slower than the
    ones before). Returns the mean training metrics and the last lr, and the steps
    taken."""
    _train_mode(model)
    totals: dict[str, float] = {}
    lr, taken, tic, last_step = 0.0, 0, time.perf_counter(), 0.0
    for step_in_epoch, (views, labels) in enumerate(data.epoch(epoch)):
        if stop_at is not None:  # would this step, as long as the last, end too late?
            now = time.perf_counter()
            last_step, tic = now - tic, now
            if taken and now + last_step > stop_at:
                break
        lr = lr_at(epoch * len(data) + step_in_epoch)
        for group in opt.param_groups:
            group["lr"] = lr * group.get("lr_scale", 1.0)
        with precision:
            loss, metrics = loss_fn(model, views, labels)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        if clip_grad_norm is not None:
            nn.utils.clip_grad_norm_(model.parameters(), clip_grad_norm)
        opt.step()
        if average is not None:
            average.update_parameters(model)
        for key, value in {"loss": loss.item(), **metrics}.items():
            totals[key] = totals.get(key, 0.0) + value
        taken += 1
        if taken == steps:
            break
    return {**{f"train_{k}": v / max(1, taken) for k, v in totals.items()}, "lr": lr}, taken


def _agree(model: nn.Module, scored: nn.Module, metrics: dict[str, float],
           device: torch.device) -> dict[str, float]:
    """After a distributed epoch: every rank takes rank 0's buffers (batch-norm statistics
    move with each rank's own images; DDP keeps the parameters equal) and the training
    metrics averaged over the ranks."""
    for module in {id(model): model, id(scored): scored}.values():
        for buffer in module.buffers():
            dist.broadcast(buffer.data, src=0)
    keys = [key for key in metrics if key != "lr"]
    values = torch.tensor([metrics[key] for key in keys], dtype=torch.float64, device=device)
    dist.all_reduce(values)
    return {**dict(zip(keys, (values / world_size()).tolist(), strict=True)),
            "lr": metrics["lr"]}


def _object_device() -> torch.device:
    """Where ``broadcast_object_list`` stages its bytes: the GPU under nccl."""
    return torch.device("cuda", torch.cuda.current_device()) \
        if dist.get_backend() == "nccl" else torch.device("cpu")


def _train_mode(model: nn.Module) -> None:
    """Train mode, except batch norms whose parameters are all frozen: a frozen layer
    must not keep moving its running statistics."""
    model.train()
    for module in model.modules():
        if isinstance(module, nn.modules.batchnorm._BatchNorm):
            params = list(module.parameters(recurse=False))
            if params and not any(p.requires_grad for p in params):
                module.eval()


def _progress(name: str, epoch: int, epochs: int, metrics: dict[str, float],
              rate: float, eta_s: float) -> None:
    if not is_main_process():
        return
    shown = "  ".join(f"{k} {v:.4g}" for k, v in metrics.items() if k != "lr")
    eta = "" if math.isinf(eta_s) else f"  {int(eta_s // 60)}:{int(eta_s % 60):02d} left"
    log.info("%s epoch %d/%d  %s  %.0f img/s%s", name, epoch + 1, epochs, shown, rate, eta)
