"""Supervised fine-tuning on the labeled training images, selected on val."""

from __future__ import annotations

import copy
import logging
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from model_lifecycle.augment.augmenter import BatchAugmenter, LabelMixer
from model_lifecycle.augment.config import SupervisedPolicy
from model_lifecycle.models.classifier import Classifier
from model_lifecycle.models.head import PROBE_IMAGES, probe_head
from model_lifecycle.models.init import dirac_convs, whiten_first_conv
from model_lifecycle.models.predict import accuracy
from model_lifecycle.training.budget import BudgetPlan, plan_epochs, trial_settings, warmup_sample
from model_lifecycle.training.config import (
    AdversarialTrainingParams,
    FinetuneParams,
    RuntimeParams,
)
from model_lifecycle.training.data import BatchStream
from model_lifecycle.training.device import rank, world_size
from model_lifecycle.training.distributed import fans_out, launch
from model_lifecycle.training.loop import Deadline, FitResult, fit
from model_lifecycle.training.tta import batch_norms
from model_lifecycle.trust.attacks import attack, attack_accuracy

log = logging.getLogger(__name__)
WHITENING_SAMPLE = 5000  # training images whose patches set the whitening filters


def whiten_stem(model: nn.Module, images: np.ndarray, indices: np.ndarray, *,
                seed: int) -> None:
    """Whiten ``model``'s first convolution (frozen) on up to ``WHITENING_SAMPLE`` images
    of ``images[indices]`` (uint8 N×C×H×W), drawn with ``seed``."""
    sample = np.random.default_rng(seed).permutation(indices)[:WHITENING_SAMPLE]
    whiten_first_conv(model, torch.from_numpy(images[np.sort(sample)]).float().div_(255))


def finetune(model: Classifier, images: np.ndarray, labels: np.ndarray,
             splits: dict[str, np.ndarray], policy: SupervisedPolicy, params: FinetuneParams,
             runtime: RuntimeParams, device: torch.device, *, name: str = "finetune",
             adversarial: AdversarialTrainingParams | None = None
             ) -> tuple[FitResult, dict[str, float]]:
    """Train ``model`` in place on ``train_labeled``; keep its best epoch on ``val``.
    ``name`` labels the progress lines (e.g. ``prune recovery``).

    With ``adversarial``, every batch is replaced by adversarial examples crafted on the
    model as it trains, and the epoch kept is the one with the best sum of clean and PGD
    accuracy on ``val`` (PGD on a held-out sample: the guard against catastrophic
    overfitting).

    With ``params.head_init`` ``linear_probe`` (and a model that is not from scratch) the
    head is first fitted as a logistic regression on the frozen features
    (:func:`~model_lifecycle.models.head.probe_head`).

    With ``params.budget_seconds`` the epoch count is planned from a measured warm-up
    (:func:`~model_lifecycle.training.budget.plan_epochs`). Returns the fit result and
    the final ``val_accuracy`` and ``test_accuracy``, the ``epochs`` trained for and the
    ``train_seconds`` used (warm-up included, final scoring not).
    """
    start, deadline, probed = time.perf_counter(), None, None
    tta = {"flip_tta": params.flip_tta, "shift_tta": params.shift_tta}
    if params.head_init == "linear_probe" and params.init != "scratch":
        # once, before any rank starts; its seconds count against the budget
        settle_batch_norms(model, images, splits["train_labeled"],
                           batch_size=params.batch_size, seed=runtime.seed)
        probe = probe_head(model, images, labels, splits["train_labeled"], seed=runtime.seed)
        log.info("%s: head initialised as a linear probe (train_labeled accuracy %.4f, "
                 "%.1f s)", name, probe, time.perf_counter() - start)
        params = params.model_copy(update={"head_init": "random"})
        if adversarial is None:  # a candidate as good as any epoch
            probed = (accuracy(model, images, labels, splits["val"], **tta),
                      copy.deepcopy(model.state_dict()))
    if fans_out(runtime):  # DDP: every rank runs this function (docs/distributed.md)
        result, scores = launch(runtime, finetune, model, images, labels, splits, policy,
                                params, runtime, name=name, adversarial=adversarial)
    else:
        if params.budget_seconds is not None:
            plan = _plan(model, images, labels, splits, policy, params, runtime, device,
                         adversarial)
            params, deadline = plan.apply(params, start)
        result = _train(model, images, labels, splits, policy, params, runtime, device,
                        name, deadline, adversarial)
        scores = None
    if probed is not None and result.best_value is not None and probed[0] > result.best_value:
        model.load_state_dict(probed[1])
        log.warning("%s: no epoch beat the linear probe it started from on val (%.4f against "
                    "%.4f at best): the probe is kept. A lower finetune.optimizer.lr, or "
                    "finetune.strategy: linear_probe, may suit these images better", name,
                    probed[0], result.best_value)
        scores = None  # the ranks scored the model they trained
    if scores is not None:
        return result, scores
    seconds = time.perf_counter() - start
    return result, {
        "val_accuracy": accuracy(model, images, labels, splits["val"], **tta),
        "test_accuracy": accuracy(model, images, labels, splits["test"], **tta),
        "epochs": result.epochs_trained, "train_seconds": seconds,
    }


def settle_batch_norms(model: nn.Module, images: np.ndarray, indices: np.ndarray, *,
                       batch_size: int, seed: int) -> None:
    """Re-estimate the running statistics of the batch norms that will train (those with
    trainable parameters) as the average over shuffled batches of ``images[indices]``.

    Why: the linear probe is fitted on eval-mode features, normalised with the running
    statistics, while fine-tuning normalises those layers with each batch's own. After a
    short pretraining the two disagree (a 1-epoch SimCLR encoder of the digits: features
    correlated 0.07), the probe's head fits features training never sees, and the first
    steps send the loss to the hundreds and the model to chance."""
    training = [m for m in batch_norms(model)
                if any(p.requires_grad for p in m.parameters(recurse=False))]
    if not training or len(indices) < 2:  # one image has no batch statistics
        return
    device = next(model.parameters()).device
    saved = [(m, m.momentum) for m in training]
    model.eval()
    for module in training:
        module.reset_running_stats()
        module.momentum = None  # a cumulative average of the batches
        module.train()
    # a seeded sample as large as the probe's: statistics need no more
    order = np.random.default_rng(seed).permutation(np.asarray(indices))[:PROBE_IMAGES]
    with torch.no_grad():
        for start in range(0, len(order), batch_size):
            batch = np.sort(order[start:start + batch_size])
            if len(batch) < 2:  # one image has no batch statistics
                break
            model(torch.from_numpy(images[batch]).to(device).float().div_(255))
    for module, momentum in saved:
        module.momentum = momentum
    model.eval()


def _plan(model: Classifier, images: np.ndarray, labels: np.ndarray,
          splits: dict[str, np.ndarray], policy: SupervisedPolicy, params: FinetuneParams,
          runtime: RuntimeParams, device: torch.device,
          adversarial: AdversarialTrainingParams | None) -> BudgetPlan:
    """The epochs that fit ``params.budget_seconds``, measured on throwaway copies of
    ``model`` trained for one epoch on a sample of ``train_labeled``."""
    one_epoch = trial_settings(params, checkpoint=None, resume=False)

    def trial(n_images: int) -> FitResult:
        subset = {**splits, "train_labeled": warmup_sample(splits["train_labeled"], n_images,
                                                           runtime.seed)}
        return _train(copy.deepcopy(model), images, labels, subset, policy, one_epoch,
                      runtime, device, "finetune warm-up", adversarial=adversarial)

    key = ("finetune.adversarial.budget_seconds"
           if adversarial is not None and adversarial.budget_seconds is not None
           else "finetune.budget_seconds")
    return plan_epochs(params.budget_seconds, len(splits["train_labeled"]), trial, key=key,
                       eval_every=params.eval_every)


def _train(model: Classifier, images: np.ndarray, labels: np.ndarray,
           splits: dict[str, np.ndarray], policy: SupervisedPolicy, params: FinetuneParams,
           runtime: RuntimeParams, device: torch.device, name: str,
           deadline: Deadline | None = None,
           adversarial: AdversarialTrainingParams | None = None) -> FitResult:
    model.to(device)
    if params.dirac_convs:
        dirac_convs(model)
    if params.whiten_stem:
        whiten_stem(model, images, splits["train_labeled"], seed=runtime.seed)
    if runtime.channels_last:
        model.to(memory_format=torch.channels_last)
    mixer = LabelMixer(policy, model.num_classes)
    stream = BatchStream(images, labels, splits["train_labeled"], batch_size=params.batch_size,
                         augment=BatchAugmenter(policy), seed=runtime.seed, device=device,
                         channels_last=runtime.channels_last, rank=rank(),
                         world_size=world_size(), on_device=runtime.data_on_device)

    generator = torch.Generator(device).manual_seed(runtime.seed)

    def loss_fn(module: nn.Module, views: list[torch.Tensor], targets: torch.Tensor):
        x, soft = mixer(views[0], targets)
        if adversarial is not None:  # crafted in train mode, as Wong et al. train
            plain = getattr(module, "module", module)  # crafted outside DDP's gradient sync
            x = attack(plain, x, targets, method=adversarial.method,
                       epsilon=adversarial.epsilon, alpha=adversarial.alpha,
                       steps=adversarial.steps, generator=generator)
        logits = module(x)
        loss = F.cross_entropy(logits.float(), soft,
                               label_smoothing=params.label_smoothing)
        return loss, {"accuracy": (logits.argmax(1) == targets).float().mean().item()}

    def evaluate(module: nn.Module, epoch: int) -> dict[str, float]:
        scores = {"val_accuracy": accuracy(module, images, labels, splits["val"],
                                           flip_tta=params.flip_tta,
                                           shift_tta=params.shift_tta)}
        if adversarial is not None:
            scores["val_pgd_accuracy"] = guard.check(module, epoch)
            # the kept epoch: a collapse of robustness loses it, while a PGD accuracy a
            # few sample images better does not cost points of clean accuracy
            scores["val_robust_score"] = scores["val_accuracy"] + scores["val_pgd_accuracy"]
        return scores

    guard = None if adversarial is None else RobustGuard(
        images, labels, splits["val"], adversarial, seed=runtime.seed, name=name)
    return fit(model, loss_fn, stream, epochs=params.epochs, optimizer=params.optimizer,
               schedule=params.schedule, evaluate=evaluate,
               monitor="val_accuracy" if adversarial is None else "val_robust_score",
               patience=params.patience, clip_grad_norm=params.clip_grad_norm,
               ema_decay=params.ema_decay, eval_every=params.eval_every, deadline=deadline,
               device=device, mixed_precision=runtime.mixed_precision,
               cpu_bfloat16=runtime.cpu_bfloat16,
               compile_model=runtime.compile,
               checkpoint=Path(params.checkpoint) if params.checkpoint else None,
               resume=params.resume, config=params.model_dump(mode="json"),
               seed=runtime.seed, name=name)


class RobustGuard:
    """PGD accuracy on a fixed sample of val after every epoch: with clean val accuracy,
    what adversarial fine-tuning keeps its best epoch by. FGSM training can
    "catastrophically overfit" (Wong et al. 2020): robust accuracy collapses towards 0
    within an epoch while clean accuracy rises; such a drop is logged, and an earlier,
    robust epoch is kept."""

    def __init__(self, images: np.ndarray, labels: np.ndarray, val: np.ndarray,
                 params: AdversarialTrainingParams, *, seed: int, name: str) -> None:
        self.images, self.labels, self.params, self.name = images, labels, params, name
        self.sample = np.sort(np.random.default_rng(seed).permutation(val)[
            :params.check_images])
        self.seed, self.best, self.collapsed_epoch = seed, 0.0, None

    def check(self, model: nn.Module, epoch: int) -> float:
        if len(self.sample) == 0:
            return float("nan")
        value = attack_accuracy(model, self.images, self.labels, self.sample, method="pgd",
                                epsilon=self.params.epsilon, alpha=self.params.epsilon / 4,
                                steps=self.params.check_steps, seed=self.seed)
        if self.best >= 0.05 and value < self.best / 2 and self.collapsed_epoch is None:
            self.collapsed_epoch = epoch
            log.warning("%s: robust accuracy collapsed at epoch %d (PGD accuracy %.3f, "
                        "best so far %.3f): catastrophic overfitting; the best robust "
                        "epoch is kept. A smaller finetune.adversarial.alpha or fewer "
                        "epochs avoid it.", self.name, epoch + 1, value, self.best)
        self.best = max(self.best, value)
        return value
