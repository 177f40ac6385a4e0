"""Test-time adaptation: a model updates itself on unlabeled test batches.

* :class:`BatchNormAdaptation` — each test batch is normalised with its own statistics
  instead of the training set's (Schneider et al., "Improving robustness against common
  corruptions by covariate shift adaptation", NeurIPS 2020; Nado et al., "Evaluating
  prediction-time batch normalization for robustness under covariate shift", 2020). No
  parameter changes; the running statistics become the stream's (a cumulative average
  of its batches), so the adapted model keeps them.
* :class:`Tent` — Wang et al., "Tent: Fully Test-Time Adaptation by Entropy
  Minimization" (ICLR 2021; reference ``DequanWang/tent``): normalization with batch
  statistics, and one optimizer step per batch on the mean prediction entropy, updating
  only the normalization layers' scale and shift. A batch's predictions are those of
  the forward pass that computed its loss (before that batch's update), as in the
  reference. The running statistics are left as they were.

Both work on a deep copy: the model given to them never changes. Usage::

    tent = Tent(model, lr=1e-3)
    logits = tent(batch)   # predicts and adapts
    tent.reset()           # back to the source model (a new stream)

Only the normalization layers are put in train mode: dropout and other train-time
behaviour stay off, so predictions are not made noisier than the model's own.
"""

from __future__ import annotations

import copy
from collections.abc import Iterator
from contextlib import contextmanager

import torch
from torch import nn

from model_lifecycle.errors import LifecycleError

BATCH_NORMS = (nn.BatchNorm1d, nn.BatchNorm2d, nn.BatchNorm3d, nn.SyncBatchNorm)
# layers whose affine scale and shift TENT updates (the reference: BatchNorm2d; the paper
# notes any normalization's affine parameters will do)
NORMS = (*BATCH_NORMS, nn.GroupNorm, nn.LayerNorm, nn.InstanceNorm1d, nn.InstanceNorm2d,
         nn.InstanceNorm3d)


def softmax_entropy(logits: torch.Tensor) -> torch.Tensor:
    """Entropy of each row's softmax, in nats: B×K logits → B."""
    return -(logits.softmax(1) * logits.log_softmax(1)).sum(1)


def batch_norms(model: nn.Module) -> list[nn.Module]:
    """The model's batch-norm layers that keep running statistics."""
    return [m for m in model.modules()
            if isinstance(m, BATCH_NORMS) and m.track_running_stats]


def norm_affine_parameters(model: nn.Module) -> dict[str, nn.Parameter]:
    """``{"<layer>.weight" | "<layer>.bias": parameter}`` of every normalization layer
    with a learnable scale and shift."""
    found = {}
    for name, module in model.named_modules():
        if isinstance(module, NORMS):
            for kind in ("weight", "bias"):
                parameter = getattr(module, kind, None)
                if isinstance(parameter, nn.Parameter):
                    found[f"{name}.{kind}" if name else kind] = parameter
    return found


@contextmanager
def batch_statistics(model: nn.Module, *, update_running: bool) -> Iterator[nn.Module]:
    """The model in eval mode except its batch norms, which normalise with each batch's
    own statistics; ``update_running``: their running statistics become the cumulative
    average of the batches seen (``momentum=None``), else they are left untouched.
    Modes and settings are restored on exit."""
    was_training = model.training
    saved = [(m, m.training, m.momentum, m.track_running_stats) for m in batch_norms(model)]
    model.eval()
    for module, *_ in saved:
        module.train()
        if update_running:
            module.momentum = None  # cumulative moving average
        else:
            # train mode without tracking: F.batch_norm gets no running buffers to update
            module.track_running_stats = False
    try:
        yield model
    finally:
        for module, training, momentum, tracking in saved:
            module.train(training)
            module.momentum, module.track_running_stats = momentum, tracking
        model.train(was_training)


class NoAdaptation:
    """The model as it is (eval mode): the baseline every method is compared with."""

    def __init__(self, model: nn.Module) -> None:
        self.model = model

    @torch.no_grad()
    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        self.model.eval()
        return self.model(x)

    def reset(self) -> None:
        """Nothing to reset."""


class BatchNormAdaptation:
    """Batch-norm statistics re-estimated on the test stream (a copy of ``model``).

    Each batch is predicted with its own statistics; the running statistics are the
    average over the stream's batches since the last :meth:`reset`. No parameter changes.
    """

    def __init__(self, model: nn.Module) -> None:
        self.model = copy.deepcopy(model)
        self._norms = batch_norms(self.model)
        if not self._norms:
            raise LifecycleError("bn adaptation needs batch-norm layers and this model has "
                                 "none: remove bn from adapt.methods.")
        self._source = copy.deepcopy(self.model.state_dict())
        self._started = False

    @torch.no_grad()
    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        if not self._started:  # the stream's statistics replace the source's
            for module in self._norms:
                module.reset_running_stats()
            self._started = True
        with batch_statistics(self.model, update_running=True):
            return self.model(x)

    def reset(self) -> None:
        """Back to the source statistics; the next batch starts a new average."""
        self.model.load_state_dict(self._source)
        self._started = False


def _under(affine: dict[str, nn.Parameter], layers: tuple[str, ...]
           ) -> dict[str, nn.Parameter]:
    """The parameters of ``affine`` inside the modules named in ``layers`` (a module's
    own name or any module below it); every name must reach at least one."""
    def inside(name: str, layer: str) -> bool:
        return name.startswith(f"{layer}.")

    missing = [layer for layer in layers if not any(inside(n, layer) for n in affine)]
    if missing:
        owners = sorted({name.rsplit(".", 1)[0] for name in affine})
        raise LifecycleError(
            f"adapt.layers names {missing[0]!r}, which holds no normalization layer of "
            f"this model: name modules that hold some, e.g. {', '.join(owners[:3])}, or "
            "set adapt.layers: null to update them all.")
    return {name: p for name, p in affine.items()
            if any(inside(name, layer) for layer in layers)}


class Tent:
    """TENT on a copy of ``model``: entropy minimisation of the normalization layers'
    scale and shift, one ``optimizer`` (``adam``: betas 0.9, 0.999; ``sgd``: momentum
    0.9) step of learning rate ``lr`` per batch, ``steps`` times per batch. ``layers``:
    only the normalization layers inside these modules (names such as
    ``encoder.stages.0``) are updated; None: all of them. The others still normalise
    with each batch's statistics."""

    def __init__(self, model: nn.Module, *, lr: float = 1e-3, steps: int = 1,
                 optimizer: str = "adam", layers: tuple[str, ...] | None = None) -> None:
        if steps < 1:
            raise LifecycleError(f"TENT takes at least one step per batch, got {steps}.")
        self.model = copy.deepcopy(model)
        self.model.requires_grad_(False)
        affine = norm_affine_parameters(self.model)
        if not affine:
            raise LifecycleError("tent updates the scale and shift of normalization layers "
                                 "and this model has none: remove tent from adapt.methods.")
        if layers is not None:
            affine = _under(affine, layers)
        for parameter in affine.values():
            parameter.requires_grad_(True)
        self.parameter_names = tuple(affine)
        params = list(affine.values())
        if optimizer == "adam":
            self.optimizer: torch.optim.Optimizer = torch.optim.Adam(
                params, lr=lr, betas=(0.9, 0.999), weight_decay=0.0)
        elif optimizer == "sgd":
            self.optimizer = torch.optim.SGD(params, lr=lr, momentum=0.9)
        else:
            raise LifecycleError(f"Unknown TENT optimizer {optimizer!r}: choose adam or sgd.")
        self.steps = steps
        self._source = (copy.deepcopy(self.model.state_dict()),
                        copy.deepcopy(self.optimizer.state_dict()))

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        with batch_statistics(self.model, update_running=False), torch.enable_grad():
            for _ in range(self.steps):
                logits = self.model(x)
                softmax_entropy(logits).mean().backward()
                self.optimizer.step()
                self.optimizer.zero_grad(set_to_none=True)
        return logits.detach()

    def reset(self) -> None:
        """Back to the source model and a fresh optimizer state."""
        self.model.load_state_dict(self._source[0])
        self.optimizer.load_state_dict(self._source[1])

    def adapted_model(self) -> nn.Module:
        """A copy of the adapted model, every parameter trainable again, in eval mode."""
        model = copy.deepcopy(self.model).requires_grad_(True)
        return model.eval()
