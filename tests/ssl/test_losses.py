"""The self-supervised losses against a straightforward reference and their properties."""

import math

import pytest
import torch
import torch.nn.functional as F

from model_lifecycle.ssl.simclr import NTXentLoss, ProjectionHead
from model_lifecycle.ssl.simsiam import SimSiamLoss, SimSiamPredictor, SimSiamProjector


def nt_xent_reference(z1, z2, temperature):
    """Eq. (1) of the SimCLR paper, one anchor at a time."""
    z = F.normalize(torch.cat([z1, z2]), dim=1)
    n = len(z1)
    total = 0.0
    for i in range(2 * n):
        j = (i + n) % (2 * n)
        sims = [math.exp(float(z[i] @ z[k]) / temperature) for k in range(2 * n) if k != i]
        total += -math.log(math.exp(float(z[i] @ z[j]) / temperature) / sum(sims))
    return total / (2 * n)


@pytest.mark.parametrize("n", [2, 5, 16])
@pytest.mark.parametrize("temperature", [0.1, 0.5])
def test_nt_xent_matches_the_paper(n, temperature):
    torch.manual_seed(n)
    z1, z2 = torch.randn(n, 8), torch.randn(n, 8)
    ours = NTXentLoss(temperature)(z1, z2).item()
    assert ours == pytest.approx(nt_xent_reference(z1, z2, temperature), rel=1e-5)


def test_nt_xent_keeps_float32_under_bfloat16_autocast():
    # runtime.cpu_bfloat16 / mixed_precision train under autocast: the similarities
    # must not be rounded to bfloat16 (their error, over the temperature, moves the loss)
    torch.manual_seed(0)
    z1, z2 = torch.randn(64, 128), torch.randn(64, 128)
    expected = NTXentLoss(0.1)(z1, z2)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        assert NTXentLoss(0.1)(z1, z2).item() == pytest.approx(expected.item(), rel=1e-6)


def test_nt_xent_is_symmetric_and_rewards_aligned_views():
    torch.manual_seed(0)
    z1, z2 = torch.randn(8, 16), torch.randn(8, 16)
    loss = NTXentLoss(0.2)
    assert loss(z1, z2).item() == pytest.approx(loss(z2, z1).item(), rel=1e-6)
    assert loss(z1, z1 + 0.01 * z2) < loss(z1, z2)


def test_simsiam_loss_is_minus_one_for_perfect_predictions_and_stops_gradients():
    torch.manual_seed(0)
    z1, z2 = torch.randn(6, 4, requires_grad=True), torch.randn(6, 4, requires_grad=True)
    loss = SimSiamLoss()
    assert loss(z2.detach() * 3, z1.detach() * 2, z1, z2).item() == pytest.approx(-1.0)
    p1, p2 = torch.randn(6, 4, requires_grad=True), torch.randn(6, 4, requires_grad=True)
    loss(p1, p2, z1, z2).backward()
    assert z1.grad is None and z2.grad is None  # targets are stop-gradient
    assert p1.grad is not None and p2.grad is not None
    swapped = loss(p2, p1, z2, z1).item()
    assert swapped == pytest.approx(loss(p1, p2, z1, z2).item(), rel=1e-6)


def test_heads_shapes():
    assert ProjectionHead(32, 64, 16)(torch.randn(4, 32)).shape == (4, 16)
    z = SimSiamProjector(32, 24)(torch.randn(4, 32))
    assert SimSiamPredictor(24, 8)(z).shape == (4, 24)
    with pytest.raises(ValueError):
        NTXentLoss(0)
