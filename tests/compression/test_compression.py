"""Pruning removes channels, quantization holds int8 weights, distillation's loss is
Hinton's formula, and no compression step changes its input model."""

import copy

import pytest
import torch
import torch.nn.functional as F

from model_lifecycle.compression.config import CompressParams
from model_lifecycle.compression.distill import distillation_loss
from model_lifecycle.compression.prune import prune_structured, prune_unstructured
from model_lifecycle.compression.quantize import fold_batch_norms, quantize
from model_lifecycle.errors import LifecycleError
from model_lifecycle.io import TorchModelDataset
from model_lifecycle.models import build_model
from model_lifecycle.models.structure import cost
from model_lifecycle.params import parse_params
from tests.models.test_registry import SMALL


def _trained_like(arch, channels=3):
    torch.manual_seed(0)
    model = build_model(arch, 5, channels, **SMALL[arch])
    model(torch.rand(16, channels, 16, 16))  # batch-norm statistics away from their init
    return model.eval()


def _same(a, b):
    return all(torch.equal(x, y) for x, y in zip(a.state_dict().values(),
                                                 b.state_dict().values(), strict=True))


# the ViT is refused by structured pruning (tests/pipelines/test_lora_run.py)
@pytest.mark.parametrize("arch", sorted(set(SMALL) - {"vit"}))
def test_structured_pruning_removes_channels_and_keeps_the_input_model(arch):
    model = _trained_like(arch)
    original = copy.deepcopy(model)
    example = torch.rand(2, 3, 16, 16)
    pruned, report = prune_structured(model, example, target=2.0, steps=2)
    assert _same(model, original)  # the input model is untouched
    assert report["macs_reduction"] >= 2.0 and report["target_reached"] == 1.0
    convs = lambda m: [c.out_channels for c in m.modules() if isinstance(c, torch.nn.Conv2d)]  # noqa: E731
    assert sum(convs(pruned)) < sum(convs(model))
    assert cost(pruned, example)["params"] < cost(model, example)["params"]
    for batch in (1, 7):  # other batch sizes and input sizes still run
        assert pruned(torch.rand(batch, 3, 16, 16)).shape == (batch, 5)
    assert pruned(torch.rand(2, 3, 24, 24)).shape == (2, 5)


def test_round_to_keeps_channel_counts_multiples_and_is_ignored_on_narrow_models():
    example = torch.rand(2, 1, 16, 16)
    wide = build_model("small_cnn", 10, 1, width=32)
    pruned, report = prune_structured(wide, example, target=2.0, steps=1, round_to=8)
    widths = [c.out_channels for c in pruned.encoder.modules()
              if isinstance(c, torch.nn.Conv2d)]
    assert all(w % 8 == 0 for w in widths) and report["macs_reduction"] >= 2.0
    narrow = build_model("small_cnn", 10, 1, width=4)  # 4-channel layers: 8 would empty them
    pruned, report = prune_structured(narrow, example, target=2.0, steps=1, round_to=8)
    assert report["target_reached"] == 1.0
    assert min(c.out_channels for c in pruned.encoder.modules()
               if isinstance(c, torch.nn.Conv2d)) > 0


def test_keep_stem_leaves_the_first_convolution_whole_and_still_reaches_the_target():
    example = torch.rand(2, 1, 16, 16)
    model = build_model("small_cnn", 10, 1, width=32)

    def conv_widths(m):
        return [c.out_channels for c in m.encoder.modules() if isinstance(c, torch.nn.Conv2d)]

    pruned, report = prune_structured(model, example, target=2.0, steps=1, keep_stem=True)
    kept, before = conv_widths(pruned), conv_widths(model)
    assert kept[0] == before[0] and report["macs_reduction"] >= 2.0
    assert all(k < b for k, b in zip(kept[1:], before[1:], strict=True))
    assert pruned(torch.rand(3, 1, 16, 16)).shape == (3, 10)
    # without it, the same model loses stem channels too
    assert conv_widths(prune_structured(model, example, target=2.0, steps=1)[0])[0] < before[0]


def test_layer_ratios_prune_the_named_layers_slower_and_others_harder():
    example = torch.rand(2, 1, 16, 16)
    model = build_model("small_cnn", 10, 1, width=32)  # stages 0, 1, 2: 32, 64, 128 channels

    def stage_widths(m):
        return [next(c for c in stage.modules() if isinstance(c, torch.nn.Conv2d)).out_channels
                for stage in m.encoder.stages]

    even, _ = prune_structured(model, example, target=2.0, steps=1)
    slow, report = prune_structured(model, example, target=2.0, steps=1,
                                    layer_ratios={"encoder.stages.0": 0.3})
    assert report["macs_reduction"] >= 2.0
    assert stage_widths(slow)[0] > stage_widths(even)[0]  # the named stage keeps more
    assert stage_widths(slow)[2] < stage_widths(even)[2]  # the rest gives more
    with pytest.raises(LifecycleError, match="encoder.stages.9.*encoder.stages.0"):
        prune_structured(model, example, target=2.0, layer_ratios={"encoder.stages.9": 0.5})


def test_a_layer_ratio_outside_zero_one_is_refused_with_its_key():
    with pytest.raises(LifecycleError, match="layer_ratios.*1.5"):
        parse_params(CompressParams, {"prune": {"structured": {
            "layer_ratios": {"encoder.stages.1": 1.5}}}}, "compress")


def test_taylor_pruning_calls_recovery_at_each_milestone():
    model = _trained_like("small_cnn")
    seen = []
    batch = lambda: (torch.rand(8, 3, 16, 16), torch.randint(0, 5, (8,)))  # noqa: E731
    _, report = prune_structured(model, torch.rand(2, 3, 16, 16), target=1.5, steps=3,
                                 importance="taylor", batch=batch,
                                 recover=lambda m, k: seen.append(k))
    assert seen == [0, 1, 2] and report["macs_reduction"] >= 1.5


@pytest.mark.parametrize("layout", ["contiguous", "channels_last"])  # as training leaves it
def test_unstructured_pruning_zeroes_weights_permanently(layout):
    model = _trained_like("small_cnn")
    if layout == "channels_last":
        model = model.to(memory_format=torch.channels_last)
    pruned, report = prune_unstructured(model, amount=0.6)
    assert report["sparsity"] == pytest.approx(0.6, abs=0.01)
    assert not any(name.endswith("_orig") for name, _ in pruned.named_parameters())
    assert (model.encoder.stages[0][0][0].weight != 0).all()  # input untouched


@pytest.mark.parametrize("mode", ["static", "dynamic"])
def test_quantized_model_holds_int8_weights_and_stays_close(mode):
    model = _trained_like("small_cnn")
    original = copy.deepcopy(model)
    calibration = [torch.rand(16, 3, 16, 16) for _ in range(4)]
    quantized = quantize(model, calibration[0], mode=mode, calibration=calibration)
    assert _same(model, original)
    dtypes = {v.dtype for v in quantized.state_dict().values() if isinstance(v, torch.Tensor)}
    packed = [v for k, v in quantized.state_dict().items() if k.endswith("_packed_params")]
    if mode == "static":
        assert torch.qint8 in dtypes  # convolution weights
    assert packed and packed[0][0].dtype == torch.qint8  # the linear head
    x = torch.rand(8, 3, 16, 16)
    ref, out = model(x), quantized(x)
    assert (out - ref).abs().max() < 0.1 * ref.abs().max() + 1e-3
    assert (out.argmax(1) == ref.argmax(1)).float().mean() >= 0.75


def test_folding_batch_norms_keeps_outputs():
    model = _trained_like("resnet18_small")
    x = torch.rand(4, 3, 16, 16)
    torch.testing.assert_close(fold_batch_norms(model)(x), model(x), atol=1e-4, rtol=1e-4)


def test_compressed_models_round_trip_exactly_through_the_catalog(tmp_path):
    model = _trained_like("resnet18_small")
    example = torch.rand(2, 3, 16, 16)
    pruned, _ = prune_structured(model, example, target=2.0, steps=1)
    quantized = quantize(pruned, example, calibration=[torch.rand(8, 3, 16, 16)])
    x = torch.rand(3, 3, 16, 16)
    for name, variant in [("pruned", pruned), ("quantized", quantized)]:
        dataset = TorchModelDataset(filepath=str(tmp_path / f"{name}.pt"))
        dataset.save(variant)
        assert torch.equal(dataset.load()(x), variant(x)), name


def _reference_kd(student, teacher, labels, t, alpha):
    """Hinton et al.: alpha·T²·KL(softmax(t/T) ‖ softmax(s/T)) + (1−alpha)·CE(s, y)."""
    p_teacher = F.softmax(teacher / t, dim=1)
    kl = (p_teacher * (p_teacher.log() - F.log_softmax(student / t, dim=1))).sum(1).mean()
    return alpha * t * t * kl + (1 - alpha) * F.cross_entropy(student, labels)


@pytest.mark.parametrize("n", [1, 4, 32])
@pytest.mark.parametrize(("t", "alpha"), [(1.0, 0.5), (4.0, 0.9), (2.0, 0.0)])
def test_distillation_loss_matches_the_formula(n, t, alpha):
    torch.manual_seed(n)
    student, teacher = torch.randn(n, 6), torch.randn(n, 6)
    labels = torch.randint(0, 6, (n,))
    ours = distillation_loss(student, teacher, labels, temperature=t, alpha=alpha)
    torch.testing.assert_close(ours, _reference_kd(student, teacher, labels, t, alpha))


def test_distillation_loss_of_bfloat16_logits_is_computed_in_float32_under_autocast():
    # runtime.cpu_bfloat16: the models' logits come out in bfloat16 and CPU autocast
    # would leave log_softmax there; the loss must be that of the same logits in float32
    torch.manual_seed(0)
    student = torch.randn(64, 10).to(torch.bfloat16)
    teacher = (student.float() + 0.05 * torch.randn(64, 10)).to(torch.bfloat16)
    labels = torch.randint(0, 10, (64,))
    expected = _reference_kd(student.float(), teacher.float(), labels, 4.0, 0.9)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        ours = distillation_loss(student, teacher, labels, temperature=4.0, alpha=0.9)
    assert ours.dtype == torch.float32
    torch.testing.assert_close(ours, expected, rtol=1e-5, atol=1e-6)


def test_unlabeled_rows_get_the_soft_term_only_and_the_teacher_gets_no_gradient():
    student = torch.randn(4, 3, requires_grad=True)
    teacher = torch.randn(4, 3, requires_grad=True)
    labels = torch.tensor([-1, -1, -1, -1])
    soft_only = distillation_loss(student, teacher, labels, temperature=2.0, alpha=0.3)
    expected = distillation_loss(student, teacher, None, temperature=2.0, alpha=0.3)
    torch.testing.assert_close(soft_only, expected)
    soft_only.backward()
    assert teacher.grad is None and student.grad is not None
    assert distillation_loss(teacher, teacher, None, temperature=3.0, alpha=1.0).item() \
        == pytest.approx(0.0, abs=1e-6)


def _three_bars():
    import numpy as np  # noqa: PLC0415

    rng = np.random.default_rng(0)
    labels = np.repeat(np.arange(3), 30)
    images = rng.integers(0, 60, (90, 1, 8, 8), dtype=np.uint8)
    images[np.arange(90), 0, labels * 2, :] = 255
    splits = {"train_labeled": np.arange(0, 90, 3), "train_unlabeled": np.arange(1, 90, 3),
              "val": np.arange(2, 90, 3)}
    return images, labels, splits


def test_distillation_trains_the_student_and_leaves_the_teacher_untouched():
    from model_lifecycle.augment.config import ViewPolicy  # noqa: PLC0415
    from model_lifecycle.compression.config import DistillParams  # noqa: PLC0415
    from model_lifecycle.compression.distill_train import distill  # noqa: PLC0415
    from model_lifecycle.training.config import RuntimeParams  # noqa: PLC0415

    images, labels, splits = _three_bars()
    torch.manual_seed(0)
    teacher = build_model("small_cnn", 3, 1, width=8).eval()
    before = copy.deepcopy(teacher)
    student = build_model("small_cnn", 3, 1, width=4)
    start = copy.deepcopy(student)
    result, _ = distill(student, teacher, images, labels, splits, ViewPolicy(),
                        DistillParams(epochs=2, batch_size=30), RuntimeParams(),
                        torch.device("cpu"))
    assert _same(teacher, before)
    assert not _same(student, start)
    assert [epoch for epoch, _ in result.history["val_accuracy"]] == [0, 1]


def test_quantization_aware_training_trains_then_converts_and_round_trips(tmp_path):
    model = _trained_like("small_cnn")
    calls = []

    def train(fake_quantized):
        opt = torch.optim.SGD(fake_quantized.parameters(), lr=0.01)
        for _ in range(3):
            loss = F.cross_entropy(fake_quantized(torch.rand(8, 3, 16, 16)),
                                   torch.randint(0, 5, (8,)))
            opt.zero_grad()
            loss.backward()
            opt.step()
        calls.append(True)

    quantized = quantize(model, torch.rand(2, 3, 16, 16), mode="qat", train=train)
    assert calls == [True] and quantized.quantization["mode"] == "qat"
    assert torch.qint8 in {v.dtype for v in quantized.state_dict().values()
                           if isinstance(v, torch.Tensor)}
    dataset = TorchModelDataset(filepath=str(tmp_path / "qat.pt"))
    dataset.save(quantized)
    x = torch.rand(3, 3, 16, 16)
    assert torch.equal(dataset.load()(x), quantized(x))
    with pytest.raises(ValueError, match="needs a train function"):
        quantize(model, x, mode="qat")


def test_student_starts_from_the_teachers_matching_leading_stages():
    from model_lifecycle.compression.distill_train import copy_leading_stages  # noqa: PLC0415

    torch.manual_seed(0)
    teacher = build_model("fast_cnn", 3, 3, widths=[8, 8, 16, 16])
    before = copy.deepcopy(teacher)
    student = build_model("fast_cnn", 3, 3, widths=[8, 8, 8, 8])
    start = copy.deepcopy(student)
    assert copy_leading_stages(student, teacher) == 2
    assert _same(teacher, before)
    for k in (0, 1):  # stem and block 1: the teacher's, buffers included
        mine = student.encoder.stages[k].state_dict()
        theirs = teacher.encoder.stages[k].state_dict()
        assert all(torch.equal(mine[key], theirs[key]) for key in theirs)
    for k in (2, 3):  # narrower: left as they were
        assert _same(student.encoder.stages[k], start.encoder.stages[k])
    assert _same(student.head, start.head)
    other_stem = build_model("fast_cnn", 3, 3, widths=[16, 8, 16, 16])
    assert copy_leading_stages(other_stem, teacher) == 0  # stops at the first mismatch


def test_the_student_is_built_from_the_teachers_stages_and_a_whitened_stem():
    from model_lifecycle.compression.config import DistillParams  # noqa: PLC0415
    from model_lifecycle.compression.distill_train import build_student  # noqa: PLC0415
    from model_lifecycle.training.config import RuntimeParams  # noqa: PLC0415

    images, _labels, splits = _three_bars()
    torch.manual_seed(0)
    teacher = build_model("fast_cnn", 3, 1, widths=[8, 8, 16, 16]).eval()
    settings = {"student_arch": "fast_cnn", "student_kwargs": {"widths": [8, 8, 8, 8]}}
    plain = build_student(teacher, images, splits, DistillParams(**settings), RuntimeParams())
    stem = teacher.encoder.stages[0][0].weight
    assert plain.num_classes == 3
    assert not torch.allclose(plain.encoder.stages[0][0].weight, stem, atol=1e-3)
    copied = build_student(teacher, images, splits,
                           DistillParams(**settings, init_from_teacher=True), RuntimeParams())
    assert torch.equal(copied.encoder.stages[0][0].weight, stem)
    whitened = build_student(teacher, images, splits,
                             DistillParams(**settings, whiten_stem=True), RuntimeParams())
    first = whitened.encoder.stages[0][0]
    assert not first.weight.requires_grad  # frozen whitening filters
    assert not torch.allclose(first.weight, plain.encoder.stages[0][0].weight, atol=1e-3)


def test_a_student_that_shares_no_stage_with_its_teacher_is_said_to_start_afresh(caplog):
    from model_lifecycle.compression.config import DistillParams  # noqa: PLC0415
    from model_lifecycle.compression.distill_train import build_student  # noqa: PLC0415
    from model_lifecycle.training.config import RuntimeParams  # noqa: PLC0415

    images, _labels, splits = _three_bars()
    teacher = build_model("fast_cnn", 3, 1, widths=[8, 8, 16, 16]).eval()
    build_student(teacher, images, splits, DistillParams(
        student_arch="fast_cnn", student_kwargs={"widths": [16, 8, 8, 8]},
        init_from_teacher=True), RuntimeParams())
    assert "init_from_teacher is set, but the student's first encoder stage has other " \
           "shapes than the teacher's: it starts from scratch" in caplog.text


def test_a_flip_teacher_gives_soft_targets_averaged_over_each_view_and_its_mirror(
        monkeypatch):
    from model_lifecycle.augment.config import ViewPolicy  # noqa: PLC0415
    from model_lifecycle.compression import distill_train  # noqa: PLC0415
    from model_lifecycle.compression.config import DistillParams  # noqa: PLC0415
    from model_lifecycle.training.config import RuntimeParams  # noqa: PLC0415

    images, labels, splits = _three_bars()
    torch.manual_seed(0)
    teacher = build_model("small_cnn", 3, 1, width=8).eval()
    seen, targets = [], []

    class Spy(torch.nn.Module):  # the teacher, recording what it is shown
        def __init__(self):
            super().__init__()
            self.model = teacher

        def forward(self, x):
            seen.append(x.clone())
            return self.model(x)

    def loss(logits, soft_targets, y, **kwargs):
        targets.append(soft_targets.clone())
        return distillation_loss(logits, soft_targets, y, **kwargs)

    monkeypatch.setattr(distill_train, "distillation_loss", loss)
    for flip in (False, True):
        seen.clear(), targets.clear()
        distill_train.distill(build_model("small_cnn", 3, 1, width=4), Spy(), images, labels,
                              splits, ViewPolicy(), DistillParams(epochs=1, batch_size=30,
                                                                  teacher_flip=flip),
                              RuntimeParams(channels_last=False), torch.device("cpu"))
        assert len(seen) == len(targets) * (2 if flip else 1)
    for k, target in enumerate(targets):  # with the flip: each view, then its mirror
        view, mirror = seen[2 * k], seen[2 * k + 1]
        torch.testing.assert_close(mirror, view.flip(3))
        with torch.no_grad():
            torch.testing.assert_close(target, (teacher(view) + teacher(mirror)) / 2)
        assert not torch.allclose(target, teacher(view))  # the mirror changed the targets


def test_a_models_weights_id_names_its_weights_int8_ones_included():
    """The `model_id` the registry's versions and the report's rows carry: one model, one
    name (a retrained model that came out bit-identical too); another model, another."""
    from model_lifecycle.models.structure import weights_id  # noqa: PLC0415

    model = _trained_like("small_cnn")
    assert weights_id(model) == weights_id(copy.deepcopy(model))
    calibration = [torch.rand(16, 3, 16, 16) for _ in range(2)]
    quantized = quantize(model, calibration[0], mode="static", calibration=calibration)
    changed = copy.deepcopy(model)
    with torch.no_grad():
        changed.head.weight[0, 0] += 1.0  # the head: a packed linear once quantized
    requantized = quantize(changed, calibration[0], mode="static", calibration=calibration)
    ids = {weights_id(m) for m in (model, changed, quantized, requantized)}
    assert len(ids) == 4
    assert weights_id(quantized) == weights_id(copy.deepcopy(quantized))
