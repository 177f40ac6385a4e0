"""Self-supervised pretraining of an encoder: SimCLR or SimSiam, monitored by k-NN accuracy."""

from __future__ import annotations

import copy
import time
from pathlib import Path

import numpy as np
import torch
from torch import nn

from model_lifecycle.augment.augmenter import BatchAugmenter
from model_lifecycle.augment.config import ViewPolicy
from model_lifecycle.models.classifier import Classifier
from model_lifecycle.ssl.probes import features, knn_accuracy, linear_probe_accuracy
from model_lifecycle.ssl.simclr import NTXentLoss, ProjectionHead
from model_lifecycle.ssl.simsiam import SimSiamLoss, SimSiamPredictor, SimSiamProjector
from model_lifecycle.training.budget import plan_epochs, trial_settings, warmup_sample
from model_lifecycle.training.config import PretrainParams, RuntimeParams
from model_lifecycle.training.data import BatchStream
from model_lifecycle.training.device import rank, world_size
from model_lifecycle.training.distributed import fans_out, launch
from model_lifecycle.training.loop import Deadline, FitResult, fit


class SSLModel(nn.Module):
    """The encoder plus the method's heads; only the encoder is kept afterwards."""

    def __init__(self, encoder: nn.Module, method: str, params: PretrainParams) -> None:
        super().__init__()
        self.encoder = encoder
        self.method = method
        if method == "simclr":
            self.projector = ProjectionHead(encoder.feature_dim, params.hidden_dim,
                                            params.projection_dim)
            self.criterion = NTXentLoss(params.temperature)
        else:
            self.projector = SimSiamProjector(encoder.feature_dim, params.hidden_dim)
            self.predictor = SimSiamPredictor(params.hidden_dim, max(2, params.hidden_dim // 4))
            self.criterion = SimSiamLoss()

    def forward(self, view1: torch.Tensor, view2: torch.Tensor) -> torch.Tensor:
        """The loss of a batch of pairs (a forward, so that DDP synchronises its gradients)."""
        # One encoder pass over both views: batch-norm statistics see the whole 2N batch.
        z = self.projector(self.encoder(torch.cat([view1, view2])))
        z1, z2 = z.chunk(2)
        if self.method == "simclr":
            return self.criterion(z1, z2)
        p1, p2 = self.predictor(z1), self.predictor(z2)
        return self.criterion(p1, p2, z1, z2)


def pretrain(model: Classifier, images: np.ndarray, labels: np.ndarray,
             splits: dict[str, np.ndarray], policy: ViewPolicy, params: PretrainParams,
             runtime: RuntimeParams, device: torch.device, *, group: str = "pretrain"
             ) -> tuple[FitResult, dict[str, float]]:
    """Train ``model.encoder`` in place on every training image (labels unused).
    ``group``: the parameter group ``params`` came from, as messages name its keys.

    With ``params.budget_seconds`` the epoch count is planned from a measured warm-up.
    Returns the fit result and the final representation quality: k-NN and linear-probe
    accuracy on ``val`` with ``train_labeled`` as memory bank / probe training set, the
    ``epochs`` trained for and the ``train_seconds`` used (warm-up included).
    """
    if fans_out(runtime):  # DDP: every rank runs this function (docs/distributed.md)
        return launch(runtime, pretrain, model, images, labels, splits, policy, params,
                      runtime, group=group)
    start, deadline = time.perf_counter(), None
    if params.budget_seconds is not None:
        one_epoch = trial_settings(params, checkpoint=None, resume=False)
        train = np.concatenate([splits["train_labeled"], splits["train_unlabeled"]])

        def trial(n_images: int) -> FitResult:
            # trains on a slice; the k-NN check still uses every labeled image as its
            # memory bank, as the real run's does
            return _train(copy.deepcopy(model), images, labels, splits, policy, one_epoch,
                          runtime, device, f"{group} warm-up",
                          train=warmup_sample(train, n_images, runtime.seed))

        plan = plan_epochs(params.budget_seconds, len(train), trial,
                           key=f"{group}.budget_seconds", eval_every=params.eval_every)
        params, deadline = plan.apply(params, start)
    result = _train(model, images, labels, splits, policy, params, runtime, device, group,
                    deadline=deadline)
    seconds = time.perf_counter() - start
    quality = _quality(model.encoder, images, labels, splits, params.knn_k, probe=True)
    return result, {**quality, "epochs": result.epochs_trained, "train_seconds": seconds}


def _train(model: Classifier, images: np.ndarray, labels: np.ndarray,
           splits: dict[str, np.ndarray], policy: ViewPolicy, params: PretrainParams,
           runtime: RuntimeParams, device: torch.device, name: str, *,
           train: np.ndarray | None = None, deadline: Deadline | None = None) -> FitResult:
    """``fit`` on ``train`` (default: every training image)."""
    if train is None:
        train = np.concatenate([splits["train_labeled"], splits["train_unlabeled"]])
    ssl = SSLModel(model.encoder, params.method, params).to(device)
    if runtime.channels_last:
        ssl.to(memory_format=torch.channels_last)
    stream = BatchStream(images, labels, train, batch_size=params.batch_size,
                         augment=BatchAugmenter(policy), n_views=2, seed=runtime.seed,
                         device=device, channels_last=runtime.channels_last,
                         rank=rank(), world_size=world_size(),
                         on_device=runtime.data_on_device)

    def loss_fn(module: nn.Module, views: list[torch.Tensor], _labels: torch.Tensor):
        return module(views[0], views[1]), {}

    def evaluate(_module: nn.Module, _epoch: int) -> dict[str, float]:
        return {"knn_accuracy": _quality(model.encoder, images, labels, splits,
                                         params.knn_k)["knn_accuracy"]}

    return fit(ssl, loss_fn, stream, epochs=params.epochs, optimizer=params.optimizer,
               schedule=params.schedule, evaluate=evaluate,
               clip_grad_norm=params.clip_grad_norm, device=device,
               mixed_precision=runtime.mixed_precision,
               cpu_bfloat16=runtime.cpu_bfloat16, compile_model=runtime.compile,
               eval_every=params.eval_every, deadline=deadline,
               checkpoint=Path(params.checkpoint) if params.checkpoint else None,
               resume=params.resume, config=params.model_dump(mode="json"),
               seed=runtime.seed, name=name)


def _quality(encoder: nn.Module, images: np.ndarray, labels: np.ndarray,
             splits: dict[str, np.ndarray], k: int, *, probe: bool = False) -> dict[str, float]:
    bank, val = splits["train_labeled"], splits["val"]
    bank_x, val_x = features(encoder, images, bank), features(encoder, images, val)
    quality = {"knn_accuracy": knn_accuracy(bank_x, labels[bank], val_x, labels[val], k=k)}
    if probe:
        quality["linear_probe_accuracy"] = linear_probe_accuracy(bank_x, labels[bank], val_x,
                                                                 labels[val])
    return quality
