import pytest
import torch
import torchvision

from model_lifecycle.errors import LifecycleError
from model_lifecycle.models import build_model
from model_lifecycle.models.adapt import apply_strategy, load_torchvision_weights


def _trainable(model):
    return {name for name, p in model.named_parameters() if p.requires_grad}


def test_linear_probe_trains_only_the_head():
    model = build_model("small_cnn", 4, 1, width=4)
    counts = apply_strategy(model, "linear_probe")
    assert _trainable(model) == {"head.weight", "head.bias"}
    assert counts["trainable_params"] == model.head.weight.numel() + 4
    assert counts["total_params"] == sum(p.numel() for p in model.parameters())


def test_bitfit_trains_only_biases_and_the_head():
    model = build_model("resnet18_small", 4, 3, width=0.125)
    apply_strategy(model, "bitfit")
    trainable = _trainable(model)
    assert trainable and all(n.endswith(".bias") or n.startswith("head.") for n in trainable)
    assert any(n.startswith("encoder.") for n in trainable)  # batch-norm shifts train


def test_partial_freezes_the_first_stages():
    model = build_model("small_cnn", 4, 1, width=4)
    apply_strategy(model, "partial", frozen_stages=2)
    trainable = _trainable(model)
    assert not any(n.startswith(("encoder.stages.0.", "encoder.stages.1.")) for n in trainable)
    assert any(n.startswith("encoder.stages.2.") for n in trainable)
    with pytest.raises(LifecycleError, match="has 3 stages"):
        apply_strategy(model, "partial", frozen_stages=9)


def test_full_unfreezes_everything_again():
    model = build_model("small_cnn", 4, 1, width=4)
    apply_strategy(model, "linear_probe")
    apply_strategy(model, "full")
    assert _trainable(model) == {n for n, _ in model.named_parameters()}


@pytest.mark.parametrize(("arch", "factory", "ours", "theirs"), [
    ("resnet18_small", torchvision.models.resnet18, "stages.1.0.conv1.weight",
     "layer1.0.conv1.weight"),
    ("mobilenet_v3_small", torchvision.models.mobilenet_v3_small, "stages.1.block.0.0.weight",
     "features.1.block.0.0.weight"),
])
def test_torchvision_weights_from_a_local_file(tmp_path, arch, factory, ours, theirs):
    torch.manual_seed(0)
    weights = factory(weights=None).state_dict()
    path = tmp_path / "weights.pth"
    torch.save(weights, path)
    model = build_model(arch, 10, 3)
    moved = load_torchvision_weights(model, path)
    assert moved["loaded_tensors"] > 0.8 * moved["encoder_tensors"]
    torch.testing.assert_close(model.encoder.state_dict()[ours], weights[theirs])


def test_torchvision_weights_errors(tmp_path):
    model = build_model("small_cnn", 10, 3)
    with pytest.raises(LifecycleError, match="is not a file"):
        load_torchvision_weights(model, tmp_path / "none.pth")
    torch.save({"x": torch.zeros(1)}, tmp_path / "ok.pth")
    with pytest.raises(LifecycleError, match="No torchvision weights map to architecture"):
        load_torchvision_weights(model, tmp_path / "ok.pth")
    resnet = build_model("resnet18_small", 10, 1)
    (tmp_path / "w.pth").write_bytes(b"junk")
    with pytest.raises(LifecycleError, match=r"not a torchvision weights file \(.*\): save "
                       r"the weights of torchvision's resnet18 with torch.save"):
        load_torchvision_weights(resnet, tmp_path / "w.pth")
    torch.save(torch.zeros(3), tmp_path / "tensor.pth")
    with pytest.raises(LifecycleError, match=r"holds a Tensor, not a state_dict"):
        load_torchvision_weights(resnet, tmp_path / "tensor.pth")


def test_weights_of_another_network_are_refused_not_mixed_in(tmp_path):
    """resnet34 shares most names with resnet18: taking what fits would mix two networks."""
    torch.save(torchvision.models.resnet34(weights=None).state_dict(), tmp_path / "r34.pth")
    model = build_model("resnet18_small", 10, 3)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    with pytest.raises(LifecycleError, match=r"r34.pth do not fit 'resnet18_small' \(e\.g\. "
                       r"layer1\.2\..*\): give the weights file of torchvision's resnet18\.$"):
        load_torchvision_weights(model, tmp_path / "r34.pth")
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())
    # the right file for a narrower model: the width is what to change
    torch.save(torchvision.models.resnet18(weights=None).state_dict(), tmp_path / "r18.pth")
    with pytest.raises(LifecycleError, match=r"torchvision's weights fit width 1, and this "
                       r"model has arch_kwargs.width 0.5: set it to 1\.$"):
        load_torchvision_weights(build_model("resnet18_small", 10, 3, width=0.5),
                                 tmp_path / "r18.pth")
    # a training script's {"state_dict": ...} wrapper is unwrapped
    torch.manual_seed(0)
    weights = torchvision.models.resnet18(weights=None).state_dict()
    torch.save({"state_dict": weights, "epoch": 3}, tmp_path / "wrapped.pth")
    load_torchvision_weights(model, tmp_path / "wrapped.pth")
    torch.testing.assert_close(model.encoder.state_dict()["stages.1.0.conv1.weight"],
                               weights["layer1.0.conv1.weight"])
