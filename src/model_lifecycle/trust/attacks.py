"""L∞ adversarial attacks on the image classifiers, and accuracy under attack.

FGSM (Goodfellow et al. 2015, "Explaining and harnessing adversarial examples") takes one
step of size ε along the sign of the input gradient of the loss; PGD (Madry et al. 2018,
"Towards deep learning models resistant to adversarial attacks") starts at a random point
of the ε-ball and takes ``steps`` such steps of size α, projecting back onto the ε-ball and
the pixel range [0, 1] after each; FGSM with a random start and step α (Wong et al. 2020,
"Fast is better than free") is the cheap attack of adversarial fine-tuning.

The two attacks are written here (about 40 lines) rather than taken from torchattacks
(last released 2023) or ART (heavy), because adversarial fine-tuning calls the same
function inside its training loop: an attack must therefore leave the model's train/eval
mode, its parameters' ``requires_grad`` and their ``.grad`` exactly as it found them, and
draw its randomness only from the ``torch.Generator`` it is given.

Models take float images B×C×H×W in [0, 1] (normalization is inside the model) and return
logits. INT8 models have no autograd: :func:`attack_accuracy` attacks them by transfer,
crafting the examples on their float ``source``.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from model_lifecycle.errors import LifecycleError

METHODS = ("fgsm", "fgsm_rs", "pgd")
# Wong et al. 2020's step for FGSM with a random start: 1.25 ε.
RANDOM_START_STEP = 1.25


def fgsm(model: nn.Module, x: torch.Tensor, y: torch.Tensor, *, epsilon: float,
         alpha: float | None = None, random_start: bool = False,
         generator: torch.Generator | None = None) -> torch.Tensor:
    """One signed-gradient step of size ``alpha`` from ``x`` (or, with ``random_start``,
    from a uniform point of the ε-ball), projected onto the ε-ball and [0, 1].

    ``alpha`` defaults to ε without a random start (Goodfellow et al.) and to 1.25 ε
    with one (Wong et al.).
    """
    _check(epsilon=epsilon, alpha=alpha)
    if alpha is None:
        alpha = RANDOM_START_STEP * epsilon if random_start else epsilon
    x = x.detach()
    start = _random_start(x, epsilon, generator) if random_start else x
    return _project(start + alpha * _gradient_sign(model, start, y), x, epsilon)


def pgd(model: nn.Module, x: torch.Tensor, y: torch.Tensor, *, epsilon: float, alpha: float,
        steps: int, random_start: bool = True,
        generator: torch.Generator | None = None) -> torch.Tensor:
    """``steps`` signed-gradient steps of size ``alpha``, each projected onto the ε-ball
    around ``x`` and [0, 1], from a uniform point of the ball (Madry et al.)."""
    _check(epsilon=epsilon, alpha=alpha, steps=steps)
    x = x.detach()
    x_adv = _random_start(x, epsilon, generator) if random_start else x
    for _ in range(steps):
        x_adv = _project(x_adv + alpha * _gradient_sign(model, x_adv, y), x, epsilon)
    return x_adv


def attack(model: nn.Module, x: torch.Tensor, y: torch.Tensor, *, method: str,
           epsilon: float, alpha: float, steps: int,
           generator: torch.Generator | None = None) -> torch.Tensor:
    """Adversarial ``x`` by ``method``: "fgsm" (step ε, no random start; ``alpha`` and
    ``steps`` unused), "fgsm_rs" (random start, step ``alpha``; ``steps`` unused) or
    "pgd" (random start, ``steps`` steps of ``alpha``)."""
    _check_method(method)
    _check(epsilon=epsilon, alpha=alpha, steps=steps)
    if method == "fgsm":
        return fgsm(model, x, y, epsilon=epsilon)
    if method == "fgsm_rs":
        return fgsm(model, x, y, epsilon=epsilon, alpha=alpha, random_start=True,
                    generator=generator)
    return pgd(model, x, y, epsilon=epsilon, alpha=alpha, steps=steps, generator=generator)


def attack_accuracy(model: nn.Module, images: np.ndarray, labels: np.ndarray,
                    indices: np.ndarray, *, method: str, epsilon: float, alpha: float,
                    steps: int, seed: int, source: nn.Module | None = None,
                    batch_size: int = 256) -> float:
    """Top-1 accuracy of ``model`` on adversarial versions of ``images[indices]`` (uint8
    N×C×H×W), NaN for no images.

    The examples are crafted on ``source`` (default: ``model``) in eval mode — a transfer
    attack when it is another model, e.g. the float source of an INT8 model — and
    classified by ``model`` in eval mode. Both models get their modes back afterwards;
    random starts come from a CPU generator seeded with ``seed``.
    """
    _check_method(method)
    _check(epsilon=epsilon, alpha=alpha, steps=steps)
    if batch_size < 1:
        raise LifecycleError(f"Attack batch_size {batch_size} is invalid: use 1 or more.")
    indices = np.asarray(indices)
    if len(indices) == 0:
        return float("nan")
    source = model if source is None else source
    generator = torch.Generator().manual_seed(seed)
    modes = [(module, module.training) for module in (model, source)]
    correct = 0
    try:
        model.eval()
        source.eval()
        for start in range(0, len(indices), batch_size):
            batch = indices[start:start + batch_size]
            x = torch.from_numpy(images[batch]).to(_device(source)).float().div_(255)
            y = torch.from_numpy(np.asarray(labels[batch], dtype=np.int64)).to(x.device)
            x_adv = attack(source, x, y, method=method, epsilon=epsilon, alpha=alpha,
                           steps=steps, generator=generator)
            with torch.no_grad():
                predicted = model(x_adv.to(_device(model))).argmax(1).cpu()
            correct += int((predicted == y.cpu()).sum())
    finally:
        for module, training in modes:
            module.train(training)
    return correct / len(indices)


def _gradient_sign(model: nn.Module, x_adv: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Sign of the loss gradient with respect to the input only: ``autograd.grad`` leaves
    the parameters' ``.grad`` untouched, and ``enable_grad`` lets callers run under
    ``no_grad``."""
    x_adv = x_adv.detach().requires_grad_(True)
    with torch.enable_grad():
        loss = _cross_entropy(model(x_adv), y)
        if not loss.requires_grad:
            raise LifecycleError("The attacked model gives no input gradient (an INT8 "
                                 "model?): attack its float model and pass it as source.")
        (grad,) = torch.autograd.grad(loss, x_adv)
    return grad.sign()


def _cross_entropy(logits: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Summed cross-entropy written as softplus(logsumexp_{j≠y}(z_j − z_y)).

    Same value as ``F.cross_entropy``, but its gradient keeps the right sign on confident
    predictions: PyTorch's gradient for the true logit is p_y − 1, which rounds to 0 once
    the margin passes ~17 (float32), leaving only the other logits' tiny gradients — and
    a sign-gradient attack would then step the wrong way (gradient masking by rounding).
    """
    logits = logits.float()
    true = logits.gather(1, y[:, None])
    others = (logits - true).scatter(1, y[:, None], float("-inf"))
    return F.softplus(others.logsumexp(1)).sum()


def _random_start(x: torch.Tensor, epsilon: float,
                  generator: torch.Generator | None) -> torch.Tensor:
    """A uniform point of the ε-ball around ``x``, clipped to [0, 1]; drawn on the
    generator's device so that a CPU generator also seeds attacks on a GPU."""
    device = generator.device if generator is not None else x.device
    noise = torch.rand(x.shape, generator=generator, device=device, dtype=x.dtype)
    return _project(x + epsilon * (2 * noise.to(x.device) - 1), x, epsilon)


def _project(x_adv: torch.Tensor, x: torch.Tensor, epsilon: float) -> torch.Tensor:
    # Clamping x_adv itself (not x + δ) keeps it exactly inside [0, 1].
    return torch.clamp(x_adv, x - epsilon, x + epsilon).clamp_(0, 1).detach()


def _device(model: nn.Module) -> torch.device:
    # An INT8 model has no parameters: it runs on the CPU.
    first = next(iter(model.parameters()), None)
    return first.device if first is not None else torch.device("cpu")


def _check(*, epsilon: float, alpha: float | None = None, steps: int | None = None) -> None:
    # Written as "not inside" so that NaN is refused too.
    if not 0 < epsilon <= 1:
        raise LifecycleError(f"Attack epsilon {epsilon} is outside (0, 1]: pixels are in "
                             "[0, 1], e.g. 8/255.")
    if alpha is not None and not alpha > 0:
        raise LifecycleError(f"Attack alpha {alpha} is invalid: the step size must be > 0.")
    if steps is not None and steps < 1:
        raise LifecycleError(f"Attack steps {steps} is invalid: use 1 or more.")


def _check_method(method: str) -> None:
    if method not in METHODS:
        raise LifecycleError(f"Unknown attack method '{method}': choose one of "
                             f"{', '.join(METHODS)}.")
