"""FGSM, FGSM with random start and PGD: the ε-ball, the closed-form worst case of a
linear model, no side effects on the model, seeding, and accuracy under (transfer) attack."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from model_lifecycle.errors import LifecycleError
from model_lifecycle.models.registry import build_model
from model_lifecycle.trust.attacks import attack, attack_accuracy, fgsm, pgd

SHAPE = (1, 4, 4)  # C, H, W of the linear model's images
EPS = 1 / 64  # a power of two: x = 0.5 ± ε is exact in float32


def linear_model(weight: torch.Tensor, bias: torch.Tensor) -> nn.Sequential:
    """f(x) = W·flatten(x) + b with two classes."""
    model = nn.Sequential(nn.Flatten(), nn.Linear(weight.shape[1], 2))
    with torch.no_grad():
        model[1].weight.copy_(weight)
        model[1].bias.copy_(bias)
    return model


def random_weight(seed: int = 0) -> torch.Tensor:
    return torch.randn(2, math.prod(SHAPE), generator=torch.Generator().manual_seed(seed))


def margin(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """logit_y − logit_other for a 2-class model."""
    logits = model(x)
    return logits.gather(1, y[:, None])[:, 0] - logits.gather(1, 1 - y[:, None])[:, 0]


def cnn() -> nn.Module:
    torch.manual_seed(0)
    return build_model("small_cnn", 3, 3, width=8)


def images(n: int, seed: int = 0) -> torch.Tensor:
    return torch.rand(n, 3, 8, 8, generator=torch.Generator().manual_seed(seed))


def run(method: str, model: nn.Module, x: torch.Tensor, y: torch.Tensor, *,
        epsilon: float = 8 / 255, seed: int = 0) -> torch.Tensor:
    return attack(model, x, y, method=method, epsilon=epsilon, alpha=2 / 255, steps=5,
                  generator=torch.Generator().manual_seed(seed))


@pytest.mark.parametrize("method", ["fgsm", "fgsm_rs", "pgd"])
def test_perturbation_stays_in_the_ball_and_the_pixel_range(method: str) -> None:
    x = images(16)
    x[:4] = 0.0  # images at the edges of the pixel range: pushing out must be clipped
    x[4:8] = 1.0
    x[8:10] = 0.001
    x[10:12] = 0.999
    y = torch.arange(16) % 3
    x_adv = run(method, cnn().eval(), x, y, epsilon=0.1)
    assert (x_adv - x).abs().max() <= 0.1 + 1e-6
    assert x_adv.min() >= 0 and x_adv.max() <= 1
    assert (x_adv - x).abs().max() > 0.05  # it moved
    assert not x_adv.requires_grad


def test_loss_rises_from_clean_to_fgsm_to_pgd() -> None:
    model = cnn()
    with torch.no_grad():  # batch-norm statistics of real activations: a sensitive model
        for module in model.modules():
            if isinstance(module, nn.BatchNorm2d):
                module.momentum = None
        model(images(64, seed=1))
    model.eval()
    x = images(32)
    with torch.no_grad():
        y = model(x).argmax(1)  # start from correctly classified images

    def loss(inputs: torch.Tensor) -> float:
        with torch.no_grad():
            return F.cross_entropy(model(inputs), y).item()

    clean = loss(x)
    one_step = loss(fgsm(model, x, y, epsilon=8 / 255))
    many_steps = loss(pgd(model, x, y, epsilon=8 / 255, alpha=2 / 255, steps=10,
                          generator=torch.Generator().manual_seed(0)))
    assert clean < one_step < many_steps  # PGD re-reads the gradient at each step


@pytest.mark.parametrize("clean_margin", [1.0, 40.0])
def test_linear_model_reaches_the_closed_form_worst_case(clean_margin: float) -> None:
    # A margin of 40 saturates the softmax: the attack must still step the right way.
    weight = random_weight()
    direction = weight[0] - weight[1]
    x = torch.full((1, *SHAPE), 0.5)
    bias = torch.tensor([clean_margin - (direction * 0.5).sum().item(), 0.0])
    model = linear_model(weight, bias)
    y = torch.tensor([0])
    worst = x - EPS * direction.sign().reshape(SHAPE)

    x_fgsm = fgsm(model, x, y, epsilon=EPS)
    assert torch.equal(x_fgsm, worst)
    drop = (margin(model, x, y) - margin(model, x_fgsm, y)).item()
    assert drop == pytest.approx(EPS * direction.abs().sum().item(), rel=1e-4)

    x_pgd = pgd(model, x, y, epsilon=EPS, alpha=EPS / 4, steps=8,
                generator=torch.Generator().manual_seed(0))
    assert torch.equal(x_pgd, worst)


def grad_state(model: nn.Module) -> list[tuple[bool, torch.Tensor | None]]:
    return [(p.requires_grad, None if p.grad is None else p.grad.clone())
            for p in model.parameters()]


@pytest.mark.parametrize("training", [True, False])
@pytest.mark.parametrize("method", ["fgsm", "fgsm_rs", "pgd"])
def test_attack_leaves_mode_and_gradients_alone(method: str, training: bool) -> None:
    model = cnn().train(training)
    x, y = images(8), torch.arange(8) % 3
    model.encoder.stages[0].requires_grad_(False)  # a partly frozen model
    F.cross_entropy(model(x), y).backward()  # the training loop's gradients
    before = grad_state(model)
    run(method, model, x, y)
    assert all(module.training == training for module in model.modules())
    after = grad_state(model)
    assert [flag for flag, _ in after] == [flag for flag, _ in before]
    for (_, old), (_, new) in zip(before, after, strict=True):
        assert (old is None and new is None) or torch.equal(old, new)


@pytest.mark.parametrize("method", ["fgsm", "fgsm_rs", "pgd"])
def test_attack_works_on_a_frozen_model_under_no_grad(method: str) -> None:
    model = cnn().eval().requires_grad_(False)
    x, y = images(8), torch.arange(8) % 3
    with torch.no_grad():
        x_adv = run(method, model, x, y)
    assert (x_adv - x).abs().max() > 0
    assert all(p.grad is None and not p.requires_grad for p in model.parameters())


@pytest.mark.parametrize("method", ["fgsm_rs", "pgd"])
def test_random_starts_follow_the_generator_only(method: str) -> None:
    model = cnn().eval()
    x, y = images(8), torch.arange(8) % 3
    torch.manual_seed(123)
    global_state = torch.get_rng_state()
    first = run(method, model, x, y, seed=0)
    assert torch.equal(torch.get_rng_state(), global_state)  # global RNG untouched
    assert torch.equal(run(method, model, x, y, seed=0), first)
    assert not torch.equal(run(method, model, x, y, seed=1), first)


def test_plain_fgsm_is_deterministic_without_a_generator() -> None:
    model = cnn().eval()
    x, y = images(8), torch.arange(8) % 3
    assert torch.equal(fgsm(model, x, y, epsilon=0.1), fgsm(model, x, y, epsilon=0.1))


def uint8_data(model: nn.Module, n: int = 40) -> tuple[np.ndarray, np.ndarray]:
    """Random uint8 images and the labels ``model`` gives them (clean accuracy 1.0)."""
    data = np.random.default_rng(0).integers(0, 256, (n, *SHAPE), dtype=np.uint8)
    with torch.no_grad():
        labels = model(torch.from_numpy(data).float() / 255).argmax(1).numpy()
    assert 0 < labels.mean() < 1  # both classes present
    return data, labels


class NoGradLinear(nn.Module):
    """Like an INT8 model: no parameters, no autograd through the forward pass."""

    def __init__(self, model: nn.Sequential) -> None:
        super().__init__()
        self.register_buffer("weight", model[1].weight.detach().clone())
        self.register_buffer("bias", model[1].bias.detach().clone())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        with torch.no_grad():
            return F.linear(x.flatten(1), self.weight, self.bias)


class ModeRecorder(nn.Module):
    """``inner``, recording whether each forward pass ran in train mode and with autograd."""

    def __init__(self, inner: nn.Module) -> None:
        super().__init__()
        self.inner = inner
        self.seen: list[bool] = []
        self.grad_enabled: list[bool] = []

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.seen.append(self.training)
        self.grad_enabled.append(torch.is_grad_enabled())
        return self.inner(x)


@pytest.mark.parametrize("method", ["fgsm", "fgsm_rs", "pgd"])
def test_attack_accuracy_with_own_and_transferred_gradients(method: str) -> None:
    weight = random_weight()
    target = ModeRecorder(linear_model(weight, torch.zeros(2))).train()
    data, labels = uint8_data(target)
    target.seen.clear()
    every = np.arange(len(data))
    options = {"method": method, "epsilon": 1.0, "alpha": 1.0, "steps": 3, "seed": 0}
    assert attack_accuracy(target, data, labels, every, **options, batch_size=7) == 0.0
    target.grad_enabled.clear()
    # The opposite model's worst case is the target's best case.
    opposite = ModeRecorder(linear_model(-weight, torch.zeros(2))).train()
    assert attack_accuracy(target, data, labels, every, **options, source=opposite) == 1.0
    assert opposite.seen and target.seen and not any(opposite.seen + target.seen)
    assert not any(target.grad_enabled)  # only the source is differentiated
    assert target.training and opposite.training  # modes restored


def test_attack_accuracy_attacks_a_model_without_autograd_by_transfer() -> None:
    source = linear_model(random_weight(), torch.zeros(2))
    quantized = NoGradLinear(source)
    data, labels = uint8_data(source)
    every = np.arange(len(data))
    options = {"method": "pgd", "epsilon": 1.0, "alpha": 0.5, "steps": 3, "seed": 0}
    assert attack_accuracy(quantized, data, labels, every, **options, source=source) == 0.0
    with pytest.raises(LifecycleError, match="source"):
        attack_accuracy(quantized, data, labels, every, **options)


def test_attack_accuracy_of_no_images_is_nan() -> None:
    model = linear_model(random_weight(), torch.zeros(2))
    data, labels = uint8_data(model)
    result = attack_accuracy(model, data, labels, np.array([], dtype=np.int64), method="pgd",
                             epsilon=0.1, alpha=0.1, steps=1, seed=0)
    assert math.isnan(result)


@pytest.mark.parametrize(("options", "named"), [
    ({"epsilon": 0.0}, "epsilon 0.0"),
    ({"epsilon": -0.1}, "epsilon -0.1"),
    ({"epsilon": 1.5}, "epsilon 1.5"),
    ({"epsilon": float("nan")}, "epsilon nan"),
    ({"alpha": 0.0}, "alpha 0.0"),
    ({"alpha": -1.0}, "alpha -1.0"),
    ({"steps": 0}, "steps 0"),
    ({"method": "cw"}, "method 'cw'"),
])
def test_bad_arguments_name_the_value(options: dict, named: str) -> None:
    model = linear_model(random_weight(), torch.zeros(2))
    x, y = torch.full((2, *SHAPE), 0.5), torch.tensor([0, 1])
    data, labels = uint8_data(model)
    kwargs = {"method": "pgd", "epsilon": 0.1, "alpha": 0.1, "steps": 1} | options
    with pytest.raises(LifecycleError, match=named):
        attack(model, x, y, **kwargs)
    with pytest.raises(LifecycleError, match=named):
        attack_accuracy(model, data, labels, np.arange(4), **kwargs, seed=0)
    if "method" not in options:
        del kwargs["method"]
        with pytest.raises(LifecycleError, match=named):
            pgd(model, x, y, **kwargs)
        if "steps" not in options:
            del kwargs["steps"]
            with pytest.raises(LifecycleError, match=named):
                fgsm(model, x, y, **kwargs)


def test_bad_batch_size_is_refused() -> None:
    model = linear_model(random_weight(), torch.zeros(2))
    data, labels = uint8_data(model)
    with pytest.raises(LifecycleError, match="batch_size 0"):
        attack_accuracy(model, data, labels, np.arange(4), method="fgsm", epsilon=0.1,
                        alpha=0.1, steps=1, seed=0, batch_size=0)
