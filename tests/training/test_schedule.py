import math

import pytest

from model_lifecycle.training.schedule import learning_rate


def _curve(kind, total=100, warmup=10, base=1.0):
    return [learning_rate(s, total, base_lr=base, warmup_steps=warmup, kind=kind)
            for s in range(total)]


def test_cosine_warms_up_linearly_then_decays_to_zero():
    lr = _curve("cosine")
    assert all(a < b for a, b in zip(lr[:10], lr[1:11], strict=True))  # rising warm-up
    assert lr[10] == pytest.approx(1.0)
    assert all(a >= b for a, b in zip(lr[10:], lr[11:], strict=False))  # then falling
    assert lr[-1] < 0.01
    assert lr[55] == pytest.approx(0.5, abs=0.02)  # halfway down the cosine


def test_onecycle_matches_torchs_one_cycle_lr():
    import torch  # noqa: PLC0415

    opt = torch.optim.SGD([torch.zeros(1, requires_grad=True)], lr=1.0)
    ref = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=1.0, total_steps=100,
                                              pct_start=0.2, cycle_momentum=False)
    expected = []
    for _ in range(100):
        expected.append(opt.param_groups[0]["lr"])
        opt.step()
        ref.step()
    ours = _curve("onecycle", warmup=round(0.2 * 100) - 1)
    assert ours == pytest.approx(expected, rel=1e-6, abs=1e-9)


def test_constant_and_errors():
    assert _curve("constant")[50] == 1.0
    with pytest.raises(ValueError):
        learning_rate(100, 100, base_lr=1.0, warmup_steps=0)
    with pytest.raises(ValueError):
        learning_rate(0, 10, base_lr=1.0, warmup_steps=0, kind="step")
    assert not math.isnan(learning_rate(0, 1, base_lr=1.0, warmup_steps=5))
