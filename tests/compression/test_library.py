"""The compression library the ``compress`` nodes and the benchmarks call: pruning with
recovery, calibration sampling, the INT8 variant, and the parameter groups."""

import numpy as np
import pytest
import torch

from model_lifecycle.augment.config import SupervisedPolicy
from model_lifecycle.compression.config import CompressParams, PruneParams, RecoveryParams
from model_lifecycle.compression.int8 import calibration_batches, quantize_variant
from model_lifecycle.compression.prune import prune_unstructured
from model_lifecycle.compression.recover import prune_and_recover, recovery_params
from model_lifecycle.errors import LifecycleError
from model_lifecycle.models import build_model
from model_lifecycle.models.structure import cost
from model_lifecycle.params import parse_params
from model_lifecycle.training.config import RuntimeParams

CPU = torch.device("cpu")


def _bars(n=120, seed=0):
    rng = np.random.default_rng(seed)
    labels = np.repeat(np.arange(3), n // 3)
    images = rng.integers(0, 60, (n, 3, 8, 8), dtype=np.uint8)
    images[np.arange(n), :, labels * 2, :] = 255
    splits = {"train_labeled": np.arange(0, n, 2), "train_unlabeled": np.arange(0, 0),
              "val": np.arange(1, n, 4), "test": np.arange(3, n, 4)}
    return images, labels, splits


def test_calibration_batches_are_seeded_from_the_run_seed():
    images, _, splits = _bars()
    first = calibration_batches(images, splits["train_labeled"], batches=3, batch_size=5,
                                seed=0)
    again = calibration_batches(images, splits["train_labeled"], batches=3, batch_size=5,
                                seed=0)
    other = calibration_batches(images, splits["train_labeled"], batches=3, batch_size=5,
                                seed=1)
    assert [b.shape for b in first] == [(5, 3, 8, 8)] * 3
    assert all(torch.equal(a, b) for a, b in zip(first, again, strict=True))
    assert not all(torch.equal(a, b) for a, b in zip(first, other, strict=True))
    assert 0.0 <= float(first[0].min()) and float(first[0].max()) <= 1.0


def test_a_calibration_batch_larger_than_the_labelled_images_is_capped(caplog):
    """calibration_batch_size 100,000 of a few dozen images filled 8 GiB: the batch holds
    as many images as there are, with a warning naming the key."""
    images, _, splits = _bars()
    pool = len(splits["train_labeled"])
    batches = calibration_batches(images, splits["train_labeled"], batches=2,
                                  batch_size=100_000, seed=0)
    assert [len(b) for b in batches] == [pool, pool]
    assert (f"compress.quantize.calibration_batch_size 100000 is more than the {pool} "
            f"train_labeled images calibration draws from: batches of {pool} are used"
            ) in caplog.text


def test_recovery_runs_with_the_recovery_settings():
    recovery = RecoveryParams(batch_size=96, label_smoothing=0.3,
                              optimizer={"lr": 0.01, "weight_decay": 1e-3},
                              schedule={"kind": "onecycle", "warmup_epochs": 1})
    params = recovery_params(recovery, 7)
    assert (params.epochs, params.batch_size, params.label_smoothing) == (7, 96, 0.3)
    assert params.optimizer.lr == 0.01 and params.optimizer.weight_decay == 1e-3
    assert params.schedule.kind == "onecycle" and params.checkpoint is None


def test_prune_and_recover_reaches_the_target_and_recovers(caplog):
    images, labels, splits = _bars()
    torch.manual_seed(0)
    model = build_model("small_cnn", 3, 3, width=8).eval()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    params = PruneParams(structured={"target": 2.0, "steps": 2, "round_to": None},
                         recovery={"epochs_per_step": 1, "final_epochs": 2, "batch_size": 20})
    with caplog.at_level("INFO"):
        pruned, report = prune_and_recover(model, images, labels, splits, SupervisedPolicy(),
                                           params, RuntimeParams(), CPU)
    assert report["macs_reduction"] >= 2.0
    example = torch.rand(1, 3, 8, 8)
    assert cost(model, example)["macs"] / cost(pruned, example)["macs"] >= 2.0
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())
    # two milestones of 1 epoch, then 2 final epochs, each logged as recovery
    lines = [r.getMessage() for r in caplog.records if "epoch" in r.getMessage()]
    assert sum(line.startswith("prune recovery epoch") for line in lines) == 4
    assert not any(line.startswith("finetune epoch") for line in lines)


@pytest.mark.parametrize(("arch", "kwargs", "teacher"), [
    ("small_cnn", {"width": 8}, None),
    ("small_cnn", {"width": 8}, {"temperature": 1.0, "alpha": 0.9}),
    # attention reads out_proj.weight without calling out_proj (no mask hook there)
    ("vit", {"width": 16, "depth": 1, "heads": 2, "mlp_dim": 32}, None)])
def test_unstructured_pruning_keeps_its_zeros_through_recovery(arch, kwargs, teacher):
    """Recovery trains every weight: without the masks on, the zeros grew back (0% zero
    after one epoch) and the pruned model was the fine-tuned one, retrained."""
    images, labels, splits = _bars()
    torch.manual_seed(0)
    model = build_model(arch, 3, 3, input_size=(8, 8), **kwargs).eval()
    params = PruneParams(method="unstructured", structured=None,
                         unstructured={"amount": 0.6},
                         recovery={"final_epochs": 2, "batch_size": 20, "teacher": teacher})
    pruned, report = prune_and_recover(model, images, labels, splits, SupervisedPolicy(),
                                       params, RuntimeParams(), CPU)
    layers = [m for m in pruned.modules() if isinstance(m, torch.nn.Conv2d | torch.nn.Linear)]
    zeros = sum(int((m.weight == 0).sum()) for m in layers)
    assert zeros / sum(m.weight.numel() for m in layers) == pytest.approx(0.6, abs=0.01)
    assert report["sparsity"] == pytest.approx(0.6, abs=0.01)
    assert not any(hasattr(m, "weight_mask") for m in layers)  # plain weights, saved as such
    assert any(not torch.equal(a, b) for a, b in zip(  # and recovery did train it
        pruned.state_dict().values(),
        prune_unstructured(model, amount=0.6)[0].state_dict().values(), strict=True))


def test_recovery_with_a_teacher_distils_from_the_unpruned_model(caplog, monkeypatch):
    from model_lifecycle.compression import recover  # noqa: PLC0415

    images, labels, splits = _bars()
    torch.manual_seed(0)
    model = build_model("small_cnn", 3, 3, width=8).eval()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    calls = []

    def spy(student, teacher, *args, name, **kwargs):
        calls.append((teacher, args[-3], name))  # args: ..., params, runtime, device
        return real(student, teacher, *args, name=name, **kwargs)

    def no_finetune(*args, **kwargs):
        raise AssertionError("recovery with a teacher fine-tuned on the labels alone")

    real = recover.distill
    monkeypatch.setattr(recover, "distill", spy)
    monkeypatch.setattr(recover, "finetune", no_finetune)
    params = PruneParams(structured={"target": 2.0, "steps": 2, "round_to": None},
                         recovery={"epochs_per_step": 1, "final_epochs": 2, "batch_size": 20,
                                   "teacher": {"temperature": 2.0, "alpha": 0.7,
                                               "flip": True}})
    with caplog.at_level("INFO"):
        pruned, report = prune_and_recover(model, images, labels, splits, SupervisedPolicy(),
                                           params, RuntimeParams(), CPU)
    assert report["macs_reduction"] >= 2.0
    assert [params.epochs for _, params, _ in calls] == [1, 1, 2]
    for teacher, distill_params, name in calls:
        assert teacher is model and name == "prune recovery"
        assert (distill_params.temperature, distill_params.alpha) == (2.0, 0.7)
        assert distill_params.teacher_flip and not distill_params.use_unlabeled
        assert distill_params.batch_size == 20
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())
    lines = [r.getMessage() for r in caplog.records if "epoch" in r.getMessage()]
    assert sum(line.startswith("prune recovery epoch") for line in lines) == 4


def test_unstructured_pruning_takes_its_own_group():
    images, labels, splits = _bars()
    model = build_model("small_cnn", 3, 3, width=8).eval()
    params = PruneParams(method="unstructured", unstructured={"amount": 0.6},
                         recovery={"final_epochs": 0})
    pruned, report = prune_and_recover(model, images, labels, splits, SupervisedPolicy(),
                                       params, RuntimeParams(), CPU)
    assert report["sparsity"] == pytest.approx(0.6, abs=0.01)


def test_a_pruning_group_that_does_not_apply_is_refused():
    with pytest.raises(LifecycleError, match=r"^Invalid parameter 'compress.prune' in conf/"
                                             r"base/parameters_compress.yml: compress.prune."
                                             r"structured does not apply to method "
                                             r"'unstructured': set it to null"):
        parse_params(CompressParams,
                     {"prune": {"method": "unstructured", "structured": {"target": 3}}},
                     "compress")
    assert PruneParams(method="unstructured").unstructured.amount == 0.5  # its defaults


def test_the_int8_variant_is_calibrated_and_quantized():
    images, labels, splits = _bars()
    model = build_model("small_cnn", 3, 3, width=8).eval()
    from model_lifecycle.compression.config import QuantizeParams  # noqa: PLC0415

    quantized = quantize_variant(model, images, labels, splits, SupervisedPolicy(),
                                 QuantizeParams(calibration_batches=2,
                                                calibration_batch_size=8),
                                 RuntimeParams(seed=3))
    x = torch.from_numpy(images[:4]).float() / 255
    assert quantized.quantization["mode"] == "static"
    assert torch.qint8 in {v.dtype for v in quantized.state_dict().values()
                           if isinstance(v, torch.Tensor)}
    assert quantized(x).shape == (4, 3)
