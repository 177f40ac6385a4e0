"""Test-time adaptation: what BN re-estimation and TENT may change, their resets, a
reference TENT step, the streams and the sweep (tiny models, seconds)."""

from __future__ import annotations

import copy
import logging
import shutil

import numpy as np
import pytest
import torch
from torch import nn

from model_lifecycle.errors import LifecycleError
from model_lifecycle.models.registry import build_model
from model_lifecycle.params import parse_params
from model_lifecycle.training.tta import (
    BatchNormAdaptation,
    Tent,
    norm_affine_parameters,
    softmax_entropy,
)
from model_lifecycle.training.tta_config import AdaptParams
from model_lifecycle.training.tta_streams import (
    Stream,
    adaptation_figure,
    adaptation_sweep,
    folder_stream,
    hurt_warning,
    mean_errors,
    stream_batches,
    stream_order,
)


def tiny_net(classes: int = 3) -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4), nn.ReLU(),  # no padding:
                         nn.Conv2d(4, 4, 3), nn.BatchNorm2d(4), nn.ReLU(),  # affine-exact
                         nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(4, classes)).eval()


def registry_net() -> nn.Module:
    torch.manual_seed(0)
    model = build_model("small_cnn", num_classes=3, in_channels=3, width=4).eval()
    with torch.no_grad():  # source statistics that differ from any test batch's
        for module in model.modules():
            if isinstance(module, nn.BatchNorm2d):
                module.running_mean.uniform_(-1, 1)
                module.running_var.uniform_(0.5, 2)
    return model


def batch(seed: int, n: int = 16) -> torch.Tensor:
    return torch.rand(n, 3, 8, 8, generator=torch.Generator().manual_seed(seed))


def states_equal(a: nn.Module, b: nn.Module) -> dict[str, bool]:
    sb = b.state_dict()
    return {k: torch.equal(v, sb[k]) for k, v in a.state_dict().items()}


@pytest.mark.parametrize("make", [tiny_net, registry_net])
def test_tent_changes_only_the_normalization_scale_and_shift(make):
    model = make()
    source = copy.deepcopy(model)
    tent = Tent(model, lr=1e-2)
    for seed in range(3):
        tent(batch(seed))
    same = states_equal(tent.model, source)
    affine = set(tent.parameter_names)
    assert affine and all(name.endswith((".weight", ".bias")) for name in affine)
    assert not any(same[name] for name in affine)  # every scale and shift moved
    assert all(same[name] for name in same if name not in affine)  # the rest bit-identical
    assert all(states_equal(model, source).values())  # the model given is untouched
    assert not model.training and not tent.model.training


def test_tent_on_named_layers_moves_only_their_norms_and_refuses_a_name_without_any():
    model = tiny_net()  # norms "1" and "4"
    tent = Tent(model, lr=1e-2, layers=("1",))
    for seed in range(3):
        tent(batch(seed))
    same = states_equal(tent.model, model)
    assert tent.parameter_names == ("1.weight", "1.bias")
    assert not same["1.weight"] and not same["1.bias"]
    assert all(same[name] for name in same if not name.startswith("1."))
    # a module holding no normalization layer, or one the model lacks: one sentence
    for name in ("0", "encoder.stages.0"):
        with pytest.raises(LifecycleError, match=rf"^adapt.layers names '{name}', which "
                           r"holds no normalization layer of this model: name modules "
                           r"that hold some, e.g. 1, 4, or set adapt.layers: null"):
            Tent(model, layers=(name,))
    with pytest.raises(LifecycleError, match=r"adapt.layers.*an empty list updates nothing"):
        parse_params(AdaptParams, {"layers": []}, "adapt")


def test_tent_reset_restores_the_model_and_the_optimizer():
    model = registry_net()
    tent = Tent(model, lr=1e-2)
    first = [tent(batch(0)), tent(batch(1))]
    tent.reset()
    assert all(states_equal(tent.model, model).values())
    # Adam's moments and step count are reset too: the episode repeats exactly
    again = [tent(batch(0)), tent(batch(1))]
    assert all(torch.equal(a, b) for a, b in zip(first, again, strict=True))


def test_one_tent_step_matches_the_reference_recipe():
    """DequanWang/tent: the whole model in train mode with batch norms that keep no
    running statistics, entropy of the first forward's outputs, one Adam step on the
    batch norms' weight and bias."""
    model, x = tiny_net(), batch(0)
    reference = copy.deepcopy(model).train().requires_grad_(False)
    params = []
    for module in reference.modules():
        if isinstance(module, nn.BatchNorm2d):
            module.requires_grad_(True)
            module.track_running_stats = False
            module.running_mean = module.running_var = None
            params += [module.weight, module.bias]
    optimizer = torch.optim.Adam(params, lr=1e-3, betas=(0.9, 0.999))
    expected = reference(x)
    (-(expected.softmax(1) * expected.log_softmax(1)).sum(1)).mean().backward()
    optimizer.step()

    tent = Tent(model, lr=1e-3)
    logits = tent(x)
    torch.testing.assert_close(logits, expected.detach())
    ours = norm_affine_parameters(tent.model)
    theirs = dict(reference.named_parameters())
    for name, value in ours.items():
        torch.testing.assert_close(value, theirs[name])
    assert tent(x).ne(logits).any()  # the next batch sees the updated parameters


def test_softmax_entropy_is_zero_for_certainty_and_log_k_for_uniform():
    logits = torch.tensor([[50.0, 0.0, 0.0], [1.0, 1.0, 1.0]])
    torch.testing.assert_close(softmax_entropy(logits),
                               torch.tensor([0.0, float(np.log(3))]), atol=1e-6, rtol=0)


def test_bn_adaptation_changes_running_statistics_only_to_the_streams_average():
    model = tiny_net()
    bn = BatchNormAdaptation(model)
    xs = [batch(0), batch(1)]
    for x in xs:
        logits = bn(x)
    # predictions use the batch's own statistics (train-mode batch norm)
    torch.testing.assert_close(logits, copy.deepcopy(model).train()(xs[1]))
    same = states_equal(bn.model, model)
    parameters = {name for name, _ in model.named_parameters()}
    assert all(same[name] for name in parameters)
    assert not same["1.running_mean"] and not same["1.running_var"]
    # the first batch norm's statistics: the average of its two input batches'
    inputs = [model[0](x).detach() for x in xs]
    torch.testing.assert_close(bn.model[1].running_mean,
                               torch.stack([i.mean((0, 2, 3)) for i in inputs]).mean(0))
    torch.testing.assert_close(bn.model[1].running_var,
                               torch.stack([i.var((0, 2, 3)) for i in inputs]).mean(0))
    bn.reset()
    assert all(states_equal(bn.model, model).values())


def test_bn_adaptation_undoes_a_contrast_and_brightness_shift():
    """A per-channel affine change of a batch norm's input (positive scale) is removed
    by normalising with the batch's statistics: shifted and clean batches then give the
    same outputs, and the source statistics do not."""
    model, x = tiny_net(), batch(0, n=64)
    shifted = 0.3 * x + 0.6
    adapted = BatchNormAdaptation(model)
    torch.testing.assert_close(adapted(shifted), adapted(x), atol=1e-4, rtol=1e-4)
    with torch.no_grad():
        moved = (model(shifted) - model(x)).abs().max()
    assert moved > 100 * (adapted(shifted) - adapted(x)).abs().max()


def _two_class_data(n: int, seed: int) -> tuple[torch.Tensor, np.ndarray]:
    """Class 0: the left half brighter; class 1: the right half."""
    g = torch.Generator().manual_seed(seed)
    labels = torch.arange(n) % 2
    x = 0.2 + 0.3 * torch.rand(n, 3, 8, 8, generator=g)
    x[labels == 0, :, :, :4] += 0.3
    x[labels == 1, :, :, 4:] += 0.3
    return (x * 255).round().to(torch.uint8), labels.numpy()


def test_bn_adaptation_lowers_the_error_of_a_trained_model_under_a_synthetic_shift():
    model = tiny_net(classes=2).train()
    images, labels = _two_class_data(64, seed=0)
    optimizer = torch.optim.Adam(model.parameters(), lr=3e-2)
    x, y = images.float() / 255, torch.from_numpy(labels)
    for _ in range(40):
        loss = nn.functional.cross_entropy(model(x), y)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    model.eval()
    test, truth = _two_class_data(128, seed=1)
    dim = (0.15 * test.float()).round().to(torch.uint8)  # a dark, low-contrast camera
    stream = Stream("synthetic", 1, dim, truth)
    params = AdaptParams(methods=("none", "bn"), batch_size=32)
    report, _ = adaptation_sweep(model, [stream], params)
    errors = report.set_index("method").error_after
    clean = float((model(test.float() / 255).argmax(1).numpy() != truth).mean())
    assert clean < 0.05
    assert errors["none"] > 0.3
    assert errors["bn"] < 0.1


def test_the_sweep_reports_every_method_and_stream_and_leaves_the_model_alone():
    model = registry_net()
    before = copy.deepcopy(model.state_dict())
    images = (batch(0, n=40) * 255).to(torch.uint8)
    labels = np.arange(40) % 3
    streams = [Stream("a", 5, images, labels), Stream("b", 5, images.flip(-1), labels)]
    report, adapted = adaptation_sweep(model, streams,
                                       AdaptParams(batch_size=16, lr=1e-2))
    assert list(report.method) == ["none", "bn", "tent"] * 2
    assert list(report.corruption) == ["a"] * 3 + ["b"] * 3
    assert (report.images == 40).all() and (report.batch_size == 16).all()
    for _, rows in report.groupby("corruption"):
        assert rows.error_before.nunique() == 1
    none = report[report.method == "none"]
    assert (none.error_after == none.error_before).all()
    assert ((report.error_after >= 0) & (report.error_after <= 1)).all()
    assert all(torch.equal(v, model.state_dict()[k]) for k, v in before.items())
    # the saved model is TENT's: its scales moved, the other weights did not
    moved = {k for k, v in adapted.state_dict().items() if not torch.equal(v, before[k])}
    assert moved and not adapted.training
    assert {k.rsplit(".", 1)[0] for k in moved} <= {
        k.rsplit(".", 1)[0] for k in norm_affine_parameters(model)}
    figure = adaptation_figure(report)
    assert len(figure.axes[0].patches) == 3 * 2  # a bar per method and stream


def test_each_row_reports_its_own_methods_seconds_in_any_method_order(monkeypatch):
    from model_lifecycle.training import tta_streams  # noqa: PLC0415

    real = tta_streams.run_stream
    clock = {"NoAdaptation": 1.0, "BatchNormAdaptation": 2.0, "Tent": 3.0}

    def labelled(adapter, *args):  # the real run, its seconds replaced by the method's
        return real(adapter, *args)[0], clock[type(adapter).__name__]

    monkeypatch.setattr(tta_streams, "run_stream", labelled)
    images = (batch(0, n=16) * 255).to(torch.uint8)
    report, _ = adaptation_sweep(registry_net(), [Stream("a", 5, images, np.arange(16) % 3)],
                                 AdaptParams(methods=("tent", "none", "bn"), batch_size=8))
    assert report.set_index("method").seconds.to_dict() == {"tent": 3.0, "none": 1.0,
                                                            "bn": 2.0}


@pytest.mark.parametrize("episodic", [True, False])
def test_episodic_tent_starts_every_stream_from_the_source_model(episodic):
    model = registry_net()
    images = (batch(0, n=32) * 255).to(torch.uint8)
    labels = np.arange(32) % 3
    first, second = Stream("a", 5, images, labels), Stream("b", 5, images.flip(-1), labels)
    params = AdaptParams(methods=("tent",), batch_size=8, lr=0.05, episodic=episodic)
    _, both = adaptation_sweep(model, [first, second], params)
    _, alone = adaptation_sweep(model, [second], params)
    same = all(torch.equal(v, alone.state_dict()[k]) for k, v in both.state_dict().items())
    assert same is episodic


def test_stream_batches_cover_the_stream_and_never_end_with_a_tiny_batch():
    for count, size in [(10, 4), (8, 4), (3, 4), (1000, 128)]:
        batches = stream_batches(count, size)
        covered = np.concatenate([np.arange(count)[b] for b in batches])
        assert np.array_equal(covered, np.arange(count))
        assert all(b.stop - b.start >= min(size, count) for b in batches)
        assert all(b.stop - b.start < 2 * size for b in batches)


def test_a_stream_is_a_seeded_sample_in_a_seeded_random_order():
    test = np.arange(100, 200)
    order = stream_order(test, 30, seed=3)
    assert len(set(order)) == 30 and set(order) <= set(test)
    assert np.array_equal(order, stream_order(test, 30, seed=3))
    assert not np.array_equal(order, np.sort(order))
    assert not np.array_equal(order, stream_order(test, 30, seed=4))


def test_a_folder_is_labelled_with_the_models_class_names(image_tree):
    stream = folder_stream(image_tree, ("ant", "cat", "dog", "fox"), (3, 8, 8),
                           AdaptParams(sample=None))
    assert stream.images.shape == (30, 3, 8, 8) and stream.images.dtype == torch.uint8
    assert sorted(np.bincount(stream.labels, minlength=4)) == [0, 10, 10, 10]
    assert np.bincount(stream.labels, minlength=4)[0] == 0  # no ant folder
    with pytest.raises(LifecycleError, match=r"Class folder 'fox' under .* is not one of "
                       r"the model's classes \(cat, dog\): rename or remove it"):
        folder_stream(image_tree, ("cat", "dog"), (3, 8, 8), AdaptParams())


def test_a_folder_of_one_class_is_measured_with_a_warning(image_tree, caplog):
    for other in ("dog", "fox"):  # one class folder left
        shutil.rmtree(image_tree / other)
    with caplog.at_level(logging.WARNING, logger="model_lifecycle"):
        stream = folder_stream(image_tree, ("cat", "dog"), (3, 8, 8), AdaptParams())
    assert len(stream.labels) == 10 and set(stream.labels.tolist()) == {0}
    assert "holds one class (cat): every batch is that class alone" in caplog.text


def test_models_without_the_layers_a_method_needs_are_refused():
    linear = nn.Sequential(nn.Flatten(), nn.Linear(3 * 8 * 8, 3))
    with pytest.raises(LifecycleError, match="remove bn from adapt.methods"):
        BatchNormAdaptation(linear)
    with pytest.raises(LifecycleError, match="remove tent from adapt.methods"):
        Tent(linear)
    # a layer norm has no statistics to re-estimate, but a scale and shift TENT can tune
    assert Tent(nn.Sequential(nn.Flatten(), nn.LayerNorm(192), nn.Linear(192, 3)))


@pytest.mark.parametrize(("raw", "message"), [
    ({"batch_size": 0},
     r"Invalid parameter 'adapt.batch_size' = 0 in conf/base/parameters_adapt.yml"),
    ({"corruptions": ["fog"]}, r"Invalid parameter 'adapt.corruptions' = \['fog'\] .*: "
                               r"unknown corruption 'fog': choose among gaussian_noise"),
    ({"severities": [0]}, r"'adapt.severities' .*: severities are 1 to 5"),
    ({"variant": "quantized"}, r"'adapt.variant' = 'quantized' .*: quantized is an INT8 "
                               r"model, .* choose one of finetuned, pruned"),
    ({"variant": "onnx_int8"}, r"onnx_int8 is an INT8 model"),
    ({"variant": "finetuned_model"}, r"unknown variant: choose one of finetuned"),
    ({"methods": ["none"]}, r"'adapt.methods' .*: name bn or tent"),
    ({"path": "/no/such/folder"}, r"'adapt.path' = '/no/such/folder' .*: not a folder"),
    ({"steps": 0}, r"'adapt.steps' = 0"),
])
def test_bad_parameters_are_one_sentence_naming_the_key(raw, message):
    with pytest.raises(LifecycleError, match=message):
        parse_params(AdaptParams, raw, "adapt")


def test_adaptation_that_raises_the_error_is_named():
    import pandas as pd  # noqa: PLC0415

    report = pd.DataFrame({"corruption": ["folder"] * 2, "severity": [0, 0],
                           "method": ["bn", "tent"], "error_before": [0.10, 0.10],
                           "error_after": [0.467, 0.105]})
    means = mean_errors(report)
    assert hurt_warning(means).startswith(
        "test-time adaptation raised the mean error from 0.100 unadapted to bn 0.467:")
    assert "tent" not in hurt_warning(means)  # within a point of it: noise
    assert hurt_warning({**means, "bn_error": 0.05}) is None
