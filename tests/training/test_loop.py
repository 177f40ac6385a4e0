"""The training loop: resume is exact, early stopping keeps the best epoch, frozen stays
frozen, EMA averages every step, val is checked when asked, per-group lr scales apply,
fractional epochs stop part-way."""

import os
import subprocess
import sys

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from model_lifecycle.augment.config import SupervisedPolicy
from model_lifecycle.errors import LifecycleError
from model_lifecycle.models import build_model
from model_lifecycle.models.adapt import apply_strategy
from model_lifecycle.training import device as device_module
from model_lifecycle.training.config import (
    FinetuneParams,
    OptimizerParams,
    RuntimeParams,
    ScheduleParams,
)
from model_lifecycle.training.data import BatchStream
from model_lifecycle.training.finetune import finetune
from model_lifecycle.training.loop import fit
from model_lifecycle.training.optim import parameter_groups
from model_lifecycle.training.schedule import learning_rate


def _data(n=96, seed=0):
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, 3, n)
    images = rng.integers(0, 60, (n, 1, 8, 8), dtype=np.uint8)
    images[np.arange(n), 0, labels * 2, :] = 255  # a learnable stripe per class
    return images, labels


def _loss(model, views, labels):
    logits = model(views[0])
    return F.cross_entropy(logits, labels), {}


def _train(epochs, *, checkpoint=None, resume=False, evaluate=None, monitor=None,
           patience=None, model=None, ema_decay=None, loss=_loss, config=None, seed=3,
           train=None, trained_from=None):
    images, labels = _data()
    torch.manual_seed(0)
    model = model or build_model("small_cnn", 3, 1, width=4)
    model.trained_from = trained_from
    stream = BatchStream(images, labels, np.arange(len(labels)) if train is None else train,
                         batch_size=16, augment=None, seed=1)
    result = fit(model, loss, stream, epochs=epochs, optimizer=OptimizerParams(lr=0.05),
                 schedule=ScheduleParams(kind="cosine", warmup_epochs=1),
                 checkpoint=checkpoint, resume=resume, evaluate=evaluate, monitor=monitor,
                 patience=patience, seed=seed, ema_decay=ema_decay, config=config)
    return model, result


def test_resume_after_an_interruption_gives_the_same_weights(tmp_path):
    uninterrupted, _ = _train(4)
    checkpoint = tmp_path / "ckpt.pt"

    class Killed(Exception):
        pass

    def kill_after_two(_model, epoch):
        if epoch == 2:
            raise Killed  # dies during epoch 3, after epoch 2's checkpoint
        return {}

    with pytest.raises(Killed):
        _train(4, checkpoint=checkpoint, evaluate=kill_after_two)
    resumed, result = _train(4, checkpoint=checkpoint, resume=True)
    assert result.epochs_run == 4
    for (name, a), b in zip(uninterrupted.state_dict().items(),
                            resumed.state_dict().values(), strict=True):
        torch.testing.assert_close(a, b, rtol=0, atol=0, msg=name)


def test_resume_from_another_models_checkpoint_names_the_file(tmp_path):
    checkpoint = tmp_path / "ckpt.pt"
    _train(1, checkpoint=checkpoint)
    before = checkpoint.read_bytes()
    with pytest.raises(LifecycleError, match=r"ckpt\.pt was written by a different model"):
        _train(2, checkpoint=checkpoint, resume=True,
               model=build_model("small_cnn", 3, 1, width=6))
    assert checkpoint.read_bytes() == before  # the old run's checkpoint is kept


def test_resume_with_other_settings_is_refused_naming_them(tmp_path):
    checkpoint = tmp_path / "ckpt.pt"
    written = {"epochs": 300, "optimizer": {"lr": 0.05, "momentum": 0.9}, "resume": False,
               "budget_seconds": None, "adversarial": {"epsilon": 0.03}}
    _train(1, checkpoint=checkpoint, config=written)
    changed = {**written, "epochs": 5, "optimizer": {"lr": 0.5, "momentum": 0.9},
               "resume": True}
    with pytest.raises(LifecycleError, match=r"ckpt\.pt was written with other settings "
                       r"\(train\.epochs 300 → 5, train\.optimizer\.lr 0\.05 → 0\.5\): "
                       r"resume with the settings it was written with, delete it, or set "
                       r"resume: false\.$"):
        _train(2, checkpoint=checkpoint, resume=True, config=changed)
    # the switch itself, where the checkpoint lives, another stage's settings, and a
    # budget's re-planned epochs may differ
    _train(2, checkpoint=checkpoint, resume=True,
           config={**written, "resume": True, "adversarial": {"epsilon": 0.1},
                   "checkpoint": "/moved/ckpt.pt", "head_init": "random"})
    budget = {**written, "budget_seconds": 60}
    _train(1, checkpoint=checkpoint, config=budget)
    _train(2, checkpoint=checkpoint, resume=True, config={**budget, "epochs": 7.5})
    # a budgeted run continued on its planned epochs without a budget: its schedule
    _train(1, checkpoint=checkpoint, config={**budget, "epochs": 4.5})
    _train(2, checkpoint=checkpoint, resume=True,
           config={**written, "epochs": 4.5, "budget_seconds": None})


def test_a_resumed_budget_says_its_schedule_is_planned_anew(tmp_path, caplog):
    checkpoint = tmp_path / "ckpt.pt"
    budget = {"epochs": 4.5, "budget_seconds": 60}
    _train(1, checkpoint=checkpoint, config=budget)
    _train(2, checkpoint=checkpoint, resume=True, config={**budget, "epochs": 7.5})
    assert ("resumed under a time budget, which starts again in this run: the epochs were "
            "planned anew (7.5; the interrupted run planned 4.5), so the learning-rate "
            "schedule does not continue the interrupted one; to continue it instead, "
            "resume with budget_seconds: null and epochs: 4.5") in caplog.text


def test_resume_from_a_training_of_other_inputs_is_refused(tmp_path):
    """A finished fine-tuning's checkpoint, then a newer encoder (or another seed, other
    training images) and `resume: true`: its epochs must not pass for this run's."""
    checkpoint = tmp_path / "ckpt.pt"
    _train(1, checkpoint=checkpoint, trained_from="m-encoder1")
    _train(2, checkpoint=checkpoint, resume=True, trained_from="m-encoder1")  # the same
    for change, named in (({"trained_from": "m-encoder2"}, "the model it starts from"),
                          ({"trained_from": "m-encoder1", "seed": 4}, "runtime.seed"),
                          ({"trained_from": "m-encoder1", "train": np.arange(80)},
                           "the training images")):
        with pytest.raises(LifecycleError, match=rf"^Checkpoint .*ckpt\.pt continues a train "
                           rf"of other inputs \({named}.* changed since it was written\): "
                           r"delete it, or set resume: false"):
            _train(3, checkpoint=checkpoint, resume=True, **change)


def test_a_checkpoint_that_cannot_be_written_names_the_key(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    with pytest.raises(LifecycleError, match=r"^Cannot write the checkpoint .*file/ckpt\.pt "
                       r"\(.*\): set train\.checkpoint to a file this user can write, or to "
                       r"null\.$"):
        _train(1, checkpoint=blocker / "ckpt.pt")


def test_the_loop_learns_and_logs_one_value_per_epoch():
    _, result = _train(6)
    losses = [value for _, value in result.history["train_loss"]]
    assert len(losses) == 6 and losses[-1] < losses[0] * 0.5


def test_early_stopping_stops_and_restores_the_best_epoch():
    scores = iter([0.5, 0.9, 0.6, 0.7, 0.65, 0.8, 0.99])
    states = []

    def evaluate(model, _epoch):
        states.append({k: v.clone() for k, v in model.state_dict().items()})
        return {"val_accuracy": next(scores)}

    model, result = _train(7, evaluate=evaluate, monitor="val_accuracy", patience=2)
    assert result.best_epoch == 1 and result.best_value == 0.9
    assert result.epochs_run == 4  # epochs 3 and 4 did not improve: stop before 5
    for key, value in model.state_dict().items():
        torch.testing.assert_close(value, states[1][key], rtol=0, atol=0)


def test_frozen_parameters_and_their_batch_norm_statistics_stay_put():
    torch.manual_seed(0)
    model = build_model("small_cnn", 3, 1, width=4)
    apply_strategy(model, "linear_probe")
    before = {k: v.clone() for k, v in model.encoder.state_dict().items()}
    head_before = model.head.weight.clone()
    _train(2, model=model)
    for key, value in model.encoder.state_dict().items():
        torch.testing.assert_close(value, before[key], rtol=0, atol=0, msg=key)
    assert not torch.equal(model.head.weight, head_before)


def test_weight_decay_skips_norms_and_biases():
    model = build_model("small_cnn", 3, 1, width=4)
    groups = {g["name"]: g for g in parameter_groups(model, 0.1)}
    norms = [m for m in model.modules() if isinstance(m, torch.nn.BatchNorm2d)]
    assert all(p.ndim > 1 for p in groups["decay"]["params"])
    assert groups["decay"]["weight_decay"] == 0.1
    assert {id(p) for p in groups["norm_bias"]["params"]} == {id(m.bias) for m in norms}
    assert {id(p) for p in groups["norm_weight"]["params"]} == {id(m.weight) for m in norms}
    assert all(g["weight_decay"] == 0.0 for k, g in groups.items() if k != "decay")
    assert sum(len(g["params"]) for g in groups.values()) == len(list(model.parameters()))


def test_norm_learning_rate_scales_multiply_each_step():
    """One plain SGD step (no momentum, constant lr): norm biases move 4× as far at
    norm_bias_lr_scale 4, norm scales not at all at norm_weight_lr_scale 0, and every
    other parameter exactly as far as without the scales."""
    images, labels = _data(n=16)

    def one_step(**scales):
        torch.manual_seed(0)
        model = build_model("small_cnn", 3, 1, width=4)
        before = {k: v.detach().clone() for k, v in model.named_parameters()}
        stream = BatchStream(images, labels, np.arange(16), batch_size=16, augment=None, seed=1)
        fit(model, _loss, stream, epochs=1, seed=3,
            optimizer=OptimizerParams(lr=0.1, momentum=0, weight_decay=0, **scales),
            schedule=ScheduleParams(kind="constant", warmup_epochs=0))
        return {k: v.detach() - before[k] for k, v in model.named_parameters()}

    plain, scaled = one_step(), one_step(norm_bias_lr_scale=4, norm_weight_lr_scale=0)
    norm = {f"{name}.{kind}" for name, m in build_model("small_cnn", 3, 1, width=4)
            .named_modules() if isinstance(m, torch.nn.BatchNorm2d) for kind in ("weight", "bias")}
    for name, step in plain.items():
        if name in norm and name.endswith("bias"):
            assert step.abs().sum() > 0
            torch.testing.assert_close(scaled[name], 4 * step, msg=name)
        elif name in norm:
            assert step.abs().sum() > 0 and scaled[name].abs().sum() == 0, name
        else:
            torch.testing.assert_close(scaled[name], step, msg=name)


def test_bitfit_changes_biases_and_head_only():
    torch.manual_seed(0)
    model = build_model("small_cnn", 3, 1, width=4)
    apply_strategy(model, "bitfit")
    before = {k: v.clone() for k, v in model.named_parameters()}
    _train(2, model=model)
    for name, value in model.named_parameters():
        moved = not torch.equal(value, before[name])
        assert moved == (name.endswith(".bias") or name.startswith("head.")), name


def test_ema_returns_the_moving_average_of_every_step():
    seen = []  # the weights each step starts from: w0, w1, …, w(n-1)

    def recording_loss(model, views, labels):
        seen.append({k: v.detach().clone() for k, v in model.state_dict().items()})
        return _loss(model, views, labels)

    averaged, _ = _train(2, ema_decay=0.8, loss=recording_loss)
    last, _ = _train(2)  # EMA does not change the trajectory: this ends at w(n)
    steps = [*seen[1:], last.state_dict()]
    expected = dict(steps[0])  # the first update copies w1
    for state in steps[1:]:
        expected = {k: 0.8 * expected[k] + 0.2 * v if v.is_floating_point() else v
                    for k, v in state.items()}
    for key, value in averaged.state_dict().items():
        if value.is_floating_point():  # BN running statistics are averaged too
            torch.testing.assert_close(value, expected[key], msg=key)
    assert not torch.allclose(averaged.head.weight, last.head.weight)


def test_fractional_epochs_stop_part_way_through_the_last_pass():
    batches = []

    def counting_loss(model, views, labels):
        batches.append(len(labels))
        return _loss(model, views, labels)

    _model, result = _train(1.5, loss=counting_loss)  # 96 images in batches of 16: 6 a pass
    assert batches == [16] * 9
    assert [epoch for epoch, _ in result.history["train_loss"]] == [0, 1]
    # the schedule spans the 9 steps taken, not two whole passes (12 steps)
    last_lr = result.history["lr"][-1][1]
    assert last_lr == pytest.approx(learning_rate(8, 9, base_lr=0.05, warmup_steps=6,
                                                  kind="cosine"))
    assert last_lr < learning_rate(8, 12, base_lr=0.05, warmup_steps=6, kind="cosine") / 2


def test_ema_resumes_exactly(tmp_path):
    uninterrupted, _ = _train(3, ema_decay=0.9)
    checkpoint = tmp_path / "ckpt.pt"

    def stop_after_one(_model, epoch):
        if epoch == 1:
            raise KeyboardInterrupt
        return {}

    with pytest.raises(KeyboardInterrupt):
        _train(3, checkpoint=checkpoint, evaluate=stop_after_one, ema_decay=0.9)
    resumed, _ = _train(3, checkpoint=checkpoint, resume=True, ema_decay=0.9)
    for (name, a), b in zip(uninterrupted.state_dict().items(),
                            resumed.state_dict().values(), strict=True):
        torch.testing.assert_close(a, b, rtol=0, atol=0, msg=name)


@pytest.mark.parametrize(("epochs", "checked"), [(5, [1, 3, 4]), (4.5, [1, 3, 4])])
def test_finetune_checks_val_every_n_epochs_and_always_at_the_end(epochs, checked):
    images, labels = _data()
    splits = {"train_labeled": np.arange(64), "val": np.arange(64, 96), "test": np.arange(0)}
    params = FinetuneParams(init="scratch", epochs=epochs, eval_every=2, batch_size=16,
                            checkpoint=None)
    torch.manual_seed(0)
    model = build_model("small_cnn", 3, 1, width=4)
    result, scores = finetune(model, images, labels, splits, SupervisedPolicy(), params,
                              RuntimeParams(), torch.device("cpu"))
    assert [epoch for epoch, _ in result.history["val_accuracy"]] == checked
    assert result.best_epoch in checked and 0 <= scores["val_accuracy"] <= 1


def _dtypes_seen(cpu_bfloat16: bool) -> tuple[set[torch.dtype], torch.nn.Module]:
    """The dtypes of the logits of every training step, and the trained model."""
    seen: set[torch.dtype] = set()

    def loss(model, views, labels):
        logits = model(views[0])
        seen.add(logits.dtype)
        return F.cross_entropy(logits.float(), labels), {}

    images, labels = _data()
    torch.manual_seed(0)
    model = build_model("small_cnn", 3, 1, width=4)
    stream = BatchStream(images, labels, np.arange(len(labels)), batch_size=16,
                         augment=None, seed=1)
    fit(model, loss, stream, epochs=1, optimizer=OptimizerParams(lr=0.05),
        schedule=ScheduleParams(kind="constant"), cpu_bfloat16=cpu_bfloat16,
        evaluate=lambda m, _epoch: seen.add(m(torch.zeros(2, 1, 8, 8)).dtype) or {})
    return seen, model


@pytest.fixture
def bfloat16_cpu(monkeypatch):
    """Pretend this CPU does (True) or does not (False) have bfloat16 instructions."""
    def pretend(native: bool) -> None:
        device_module.cpu_bfloat16.cache_clear()
        device_module._cpu_autocast.cache_clear()
        # raising=False: a torch without these private checks runs the tests too
        monkeypatch.setattr(torch.cpu, "_is_avx512_bf16_supported", lambda: native,
                            raising=False)
        monkeypatch.setattr(torch.cpu, "_is_amx_tile_supported", lambda: False,
                            raising=False)
    yield pretend
    device_module.cpu_bfloat16.cache_clear()
    device_module._cpu_autocast.cache_clear()


def test_cpu_bfloat16_trains_in_bfloat16_and_keeps_float32_weights(bfloat16_cpu):
    bfloat16_cpu(True)
    seen, model = _dtypes_seen(cpu_bfloat16=True)
    # training steps ran under autocast; the evaluation after the epoch did not
    assert seen == {torch.bfloat16, torch.float32}
    assert {p.dtype for p in model.parameters()} == {torch.float32}
    assert {b.dtype for b in model.buffers() if b.is_floating_point()} == {torch.float32}


def test_cpu_bfloat16_stays_float32_without_the_instructions(bfloat16_cpu, caplog):
    bfloat16_cpu(False)
    with caplog.at_level("WARNING"):
        seen, _ = _dtypes_seen(cpu_bfloat16=True)
    assert seen == {torch.float32}
    assert "no bfloat16 instructions" in caplog.text and "stays in float32" in caplog.text


def test_a_torch_without_the_private_cpu_checks_counts_as_no_bfloat16(monkeypatch):
    device_module.cpu_bfloat16.cache_clear()
    for name in ("_is_avx512_bf16_supported", "_is_amx_tile_supported"):
        monkeypatch.delattr(torch.cpu, name, raising=False)
    try:
        assert device_module.cpu_bfloat16() is False
    finally:
        device_module.cpu_bfloat16.cache_clear()


def test_cpu_bfloat16_is_off_unless_asked(bfloat16_cpu):
    bfloat16_cpu(True)
    seen, _ = _dtypes_seen(cpu_bfloat16=False)
    assert seen == {torch.float32}
    assert RuntimeParams().cpu_bfloat16 is False


@pytest.mark.parametrize("setting", [True, False])
def test_finetune_trains_in_bfloat16_when_runtime_asks(bfloat16_cpu, setting):
    bfloat16_cpu(True)
    seen: set[torch.dtype] = set()
    model = build_model("small_cnn", 3, 1, width=4)
    model.head.register_forward_hook(lambda _m, _i, out: seen.add(out.dtype))
    images, labels = _data()
    splits = {"train_labeled": np.arange(64), "val": np.arange(64, 96), "test": np.arange(0)}
    params = FinetuneParams(init="scratch", epochs=1, batch_size=16, checkpoint=None)
    finetune(model, images, labels, splits, SupervisedPolicy(), params,
             RuntimeParams(cpu_bfloat16=setting), torch.device("cpu"))
    # training steps in bfloat16 only when asked; the val check always in float32
    assert seen == ({torch.bfloat16, torch.float32} if setting else {torch.float32})
    assert {p.dtype for p in model.parameters()} == {torch.float32}


def test_a_killed_runs_temporary_checkpoint_is_removed_by_the_next_save(tmp_path):
    from model_lifecycle.training.checkpoint import save_checkpoint  # noqa: PLC0415

    checkpoint = tmp_path / "ckpt.pt"
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    stale = tmp_path / f"ckpt.pt.tmp-{dead.pid}"  # a run killed mid-save
    stale.write_bytes(b"half a checkpoint")
    other = tmp_path / f"ckpt.pt.tmp-{os.getppid()}"  # a live run's: kept
    other.write_bytes(b"being written")
    save_checkpoint(checkpoint, {"epoch": 1})
    assert not stale.exists() and other.exists()
    assert checkpoint.exists()


def test_a_warm_up_as_long_as_the_schedule_is_named(caplog):
    _train(1.5)  # 9 steps, 6 of them warm-up: the learning rate comes down
    assert "warm-up" not in caplog.text
    _train(1)  # 6 steps, all warm-up: it never does
    assert "warm-up (6 steps) is as long as the whole schedule (6 steps" in caplog.text
    assert "schedule.warmup_epochs" in caplog.text
