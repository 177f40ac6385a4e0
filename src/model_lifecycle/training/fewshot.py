"""Episodic meta-training of an encoder with the Prototypical Networks loss (Snell et al.
2017), through the project's one training loop: an "epoch" is ``EPISODES_PER_EPOCH``
episodes, each one optimizer step."""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator

import numpy as np
import torch
from torch import nn

from model_lifecycle.augment.augmenter import BatchAugmenter
from model_lifecycle.augment.config import ViewPolicy
from model_lifecycle.data.episodes import check_episodes, sample_episodes
from model_lifecycle.data.store import gather_rows
from model_lifecycle.models.classifier import Classifier
from model_lifecycle.models.predict import predict
from model_lifecycle.models.protonet import episode_accuracies, protonet_loss
from model_lifecycle.training.config import OptimizerParams, RuntimeParams, ScheduleParams
from model_lifecycle.training.fewshot_config import META_KEYS, MORE_LABELED, MetaTrainParams
from model_lifecycle.training.loop import Deadline, FitResult, fit

log = logging.getLogger(__name__)

EPISODES_PER_EPOCH = 100
VAL_EPISODES = 200  # episodes of the validation check after every epoch


class EpisodeStream:
    """Training episodes from ``images[indices]`` in the shape :func:`fit` iterates.

    Each batch is one episode: ``way × (shot + queries)`` images, class-major (class
    ``w``'s support images, then its queries), augmented; its labels are the episode-local
    classes. Episode ``k`` of epoch ``e`` comes from a generator seeded by (seed, e).
    """

    def __init__(self, images: np.ndarray, labels: np.ndarray, indices: np.ndarray, *,
                 way: int, shot: int, queries: int, augment: BatchAugmenter | None,
                 seed: int = 0, device: torch.device | None = None,
                 channels_last: bool = False, episodes_per_epoch: int = EPISODES_PER_EPOCH
                 ) -> None:
        self.images = images  # indexed per episode: a memory map is read episode by episode
        self.indices = np.asarray(indices, dtype=np.int64)
        self.labels = labels[self.indices]
        self.way, self.shot, self.queries = way, shot, queries
        self.augment, self.seed = augment, seed
        self.device = device or torch.device("cpu")
        self.memory_format = torch.channels_last if channels_last else torch.contiguous_format
        self.episodes_per_epoch = episodes_per_epoch
        self.batch_size = way * (shot + queries)  # images per step, for images/s

    def __len__(self) -> int:
        return self.episodes_per_epoch

    def epoch(self, epoch: int) -> Iterator[tuple[list[torch.Tensor], torch.Tensor]]:
        rng = np.random.default_rng((self.seed, epoch))
        generator = torch.Generator().manual_seed(self.seed * 100_003 + epoch)
        episodes = sample_episodes(self.labels, way=self.way, shot=self.shot,
                                   queries=self.queries, episodes=len(self), rng=rng)
        targets = torch.arange(self.way).repeat_interleave(self.shot + self.queries)
        for episode in episodes:
            raw = torch.from_numpy(gather_rows(self.images, self.indices[episode.ravel()]))
            x = self.augment(raw, generator) if self.augment else raw.float().div_(255)
            yield ([x.to(self.device).contiguous(memory_format=self.memory_format)],
                   targets.to(self.device))


def meta_train(model: Classifier, images: np.ndarray, labels: np.ndarray,
               class_names: tuple[str, ...], splits: dict[str, np.ndarray],
               policy: ViewPolicy | None, params: MetaTrainParams, runtime: RuntimeParams,
               device: torch.device) -> tuple[FitResult, dict[str, float]]:
    """Meta-train ``model.encoder`` in place on episodes of ``train_labeled``.

    After every epoch the encoder answers ``VAL_EPISODES`` fixed episodes of ``val`` (when
    val has enough images per class) and the best epoch is kept. Returns the fit result
    and the ``episodes`` trained, ``train_seconds`` and the last ``val_accuracy``.
    """
    train = splits["train_labeled"]
    check_episodes(labels[train], class_names, way=params.way, shot=params.shot,
                   queries=params.queries, keys=META_KEYS, pool="train_labeled",
                   more=MORE_LABELED)
    start = time.perf_counter()
    deadline = (Deadline(start + params.budget_seconds)
                if params.budget_seconds is not None else None)
    encoder = model.encoder.to(device)
    if runtime.channels_last:
        encoder.to(memory_format=torch.channels_last)
    stream = EpisodeStream(images, labels, train, way=params.way, shot=params.shot,
                           queries=params.queries,
                           augment=BatchAugmenter(policy) if policy is not None else None,
                           seed=runtime.seed, device=device,
                           channels_last=runtime.channels_last)
    evaluate = _val_check(images, labels, splits["val"], params, runtime.seed)

    def loss_fn(module: nn.Module, views: list[torch.Tensor], _targets: torch.Tensor):
        features = module(views[0]).float()
        loss, acc = protonet_loss(features.view(params.way, -1, features.shape[-1]),
                                  shot=params.shot)
        return loss, {"accuracy": acc.item()}

    result = fit(encoder, loss_fn, stream, epochs=params.episodes / len(stream),
                 optimizer=OptimizerParams(name="adamw", lr=params.lr, weight_decay=0.0),
                 schedule=ScheduleParams(kind="cosine", warmup_epochs=None,
                                         warmup_fraction=0.05),
                 evaluate=evaluate, monitor="val_accuracy" if evaluate else None,
                 device=device, mixed_precision=runtime.mixed_precision,
                 cpu_bfloat16=runtime.cpu_bfloat16, deadline=deadline,
                 seed=runtime.seed, name="fewshot meta-train")
    encoder.to(memory_format=torch.contiguous_format)
    scores = {"episodes": result.epochs_trained * len(stream),
              "train_seconds": time.perf_counter() - start}
    if evaluate is not None:
        scores["val_accuracy"] = evaluate(encoder, result.epochs_run)["val_accuracy"]
    return result, scores


def _val_check(images: np.ndarray, labels: np.ndarray, val: np.ndarray,
               params: MetaTrainParams, seed: int):
    """``evaluate(encoder, epoch)``: mean query accuracy on fixed episodes of ``val``, or
    None when val cannot fill an episode."""
    present, counts = np.unique(labels[val], return_counts=True)
    if len(present) < params.way or counts.min() < params.shot + params.queries:
        log.info("fewshot meta-train: val cannot fill a %d-way %d-shot episode with %d "
                 "queries; the last epoch is kept", params.way, params.shot, params.queries)
        return None
    episodes = torch.from_numpy(sample_episodes(
        labels[val], way=params.way, shot=params.shot, queries=params.queries,
        episodes=VAL_EPISODES, rng=np.random.default_rng((seed, 1))))

    def evaluate(encoder: nn.Module, _epoch: int) -> dict[str, float]:
        features = predict(encoder, images, val)
        accuracy = episode_accuracies(features, episodes, shot=params.shot).mean()
        return {"val_accuracy": float(accuracy)}

    return evaluate
