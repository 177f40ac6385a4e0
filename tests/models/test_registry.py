import pytest
import torch

from model_lifecycle.errors import LifecycleError
from model_lifecycle.models import available, build_model
from model_lifecycle.models.registry import build_from_spec

ARCHS = available()
SMALL = {"small_cnn": {"width": 8}, "fast_cnn": {"width": 0.125},
         "resnet18_small": {"width": 0.125}, "mobilenet_v3_small": {"width": 0.5},
         "vgg11_small": {"width": 8}}


def test_the_registry_holds_the_promised_architectures():
    assert set(ARCHS) >= {"small_cnn", "fast_cnn", "resnet18_small", "mobilenet_v3_small",
                          "vgg11_small"}


@pytest.mark.parametrize("arch", ARCHS)
@pytest.mark.parametrize(("channels", "size"), [(1, 8), (3, 8), (3, 13), (1, 32)])
def test_shape_finite_and_backward(arch, channels, size):
    torch.manual_seed(0)
    model = build_model(arch, num_classes=7, in_channels=channels, **SMALL[arch])
    x = torch.rand(4, channels, size, size)
    logits = model(x)
    assert logits.shape == (4, 7)
    assert torch.isfinite(logits).all()
    assert model.features(x).shape == (4, model.encoder.feature_dim)
    logits.sum().backward()
    grads = [p.grad for p in model.parameters() if p.requires_grad]
    assert all(g is not None and torch.isfinite(g).all() for g in grads)


@pytest.mark.parametrize("arch", ARCHS)
def test_spec_rebuilds_the_same_architecture(arch):
    model = build_model(arch, 5, 3, **SMALL[arch])
    twin = build_from_spec(model.spec)
    twin.load_state_dict(model.state_dict())  # strict: same modules, same shapes
    assert twin.spec == model.spec


def test_resnet_width_multiplier_scales_parameters():
    narrow = sum(p.numel() for p in build_model("resnet18_small", 10, width=0.25).parameters())
    full = sum(p.numel() for p in build_model("resnet18_small", 10).parameters())
    assert 10 < full / narrow < 20  # ~16× (quadratic in width)


def test_unknown_architecture_and_bad_arguments():
    with pytest.raises(LifecycleError, match="Unknown architecture 'resnet1000'"):
        build_model("resnet1000", 10)
    with pytest.raises(LifecycleError, match="does not take these arguments"):
        build_model("small_cnn", 10, depth=3)


def test_fast_cnn_widths_set_each_stage_and_are_checked():
    model = build_model("fast_cnn", 10, 3, widths=[16, 24, 40, 48])
    convs = [m for m in model.encoder.modules() if isinstance(m, torch.nn.Conv2d)]
    assert [c.out_channels for c in convs] == [16, 24, 24, 40, 40, 48, 48]
    assert model.encoder.feature_dim == 48
    assert build_from_spec(model.spec).spec["widths"] == [16, 24, 40, 48]
    with pytest.raises(LifecycleError, match="arch_kwargs.widths"):
        build_model("fast_cnn", 10, 3, widths=[16, 24, 40])
