import pytest
import torch

from model_lifecycle.errors import LifecycleError
from model_lifecycle.models import available, build_model
from model_lifecycle.models.registry import build_from_spec

ARCHS = available()
SMALL = {"small_cnn": {"width": 8}, "fast_cnn": {"width": 0.125},
         "resnet18_small": {"width": 0.125}, "mobilenet_v3_small": {"width": 0.5},
         "vgg11_small": {"width": 8},
         "vit": {"depth": 2, "width": 24, "heads": 2, "mlp_dim": 48}}


def test_the_registry_holds_the_promised_architectures():
    assert set(ARCHS) >= {"small_cnn", "fast_cnn", "resnet18_small", "mobilenet_v3_small",
                          "vgg11_small", "vit"}


@pytest.mark.parametrize("arch", ARCHS)
@pytest.mark.parametrize(("channels", "size"), [(1, 8), (3, 8), (3, 13), (1, 32)])
def test_shape_finite_and_backward(arch, channels, size):
    torch.manual_seed(0)
    kwargs = dict(SMALL[arch])
    if arch == "vit" and size % 2:
        kwargs["patch_size"] = 1  # 13 pixels divide into no larger patch
    model = build_model(arch, num_classes=7, in_channels=channels, input_size=(size, size),
                        **kwargs)
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
    with pytest.raises(LifecycleError, match=r"^Architecture 'small_cnn' cannot be built "
                                             r"with these arguments \(.*depth.*\): fix "
                                             r"arch_kwargs\.$"):
        build_model("small_cnn", 10, depth=3)
    with pytest.raises(LifecycleError, match=r"cannot be built .*negative dimension"):
        build_model("small_cnn", 10, width=-3)


def test_fast_cnn_widths_set_each_stage_and_are_checked():
    model = build_model("fast_cnn", 10, 3, widths=[16, 24, 40, 48])
    convs = [m for m in model.encoder.modules() if isinstance(m, torch.nn.Conv2d)]
    assert [c.out_channels for c in convs] == [16, 24, 24, 40, 40, 48, 48]
    assert model.encoder.feature_dim == 48
    assert build_from_spec(model.spec).spec["widths"] == [16, 24, 40, 48]
    with pytest.raises(LifecycleError, match="arch_kwargs.widths"):
        build_model("fast_cnn", 10, 3, widths=[16, 24, 40])


def test_vit_defaults_are_the_cifar_scale_model():
    model = build_model("vit", 10, 3, input_size=(32, 32))
    embed, *blocks, _norm = model.encoder.stages
    assert model.spec["image_size"] == 32 and embed.proj.stride == (4, 4)
    assert embed.pos_embedding.shape == (1, 64, 192)  # 8×8 tokens of width 192
    assert len(blocks) == 6
    assert {b.self_attention.num_heads for b in blocks} == {3}
    assert {b.mlp[0].out_features for b in blocks} == {384}
    assert model.encoder.feature_dim == 192
    assert 1.5e6 < sum(p.numel() for p in model.parameters()) < 2.2e6


@pytest.mark.parametrize(("size", "patch", "tokens"), [(8, 2, 16), (16, 4, 16), (32, 4, 64)])
def test_vit_patch_size_follows_the_images(size, patch, tokens):
    model = build_model("vit", 10, 1, input_size=(size, size), **SMALL["vit"])
    assert model.spec["image_size"] == size  # recorded: the file rebuilds the same model
    assert model.encoder.stages[0].proj.stride == (patch, patch)
    assert model.encoder.stages[0].pos_embedding.shape[1] == tokens
    rectangular = build_model("vit", 10, 1, input_size=(8, 16), **SMALL["vit"])
    assert rectangular.spec["image_size"] == [8, 16]
    assert rectangular(torch.rand(2, 1, 8, 16)).shape == (2, 10)


def test_vit_refuses_sizes_it_cannot_patch_in_one_sentence():
    with pytest.raises(LifecycleError, match=r"13×13 pixels do not divide into 2-pixel "
                       r"patches: set arch_kwargs.patch_size"):
        build_model("vit", 10, 1, input_size=(13, 13))
    with pytest.raises(LifecycleError, match="not divisible by 4 heads"):
        build_model("vit", 10, 1, width=30, heads=4)
    model = build_model("vit", 10, 1, input_size=(16, 16), **SMALL["vit"])
    with pytest.raises(LifecycleError, match=r"built for 16×16 images but got 8×8: set "
                       r"arch_kwargs.image_size"):
        model(torch.rand(1, 1, 8, 8))


def test_image_size_reaches_only_architectures_that_take_it():
    cnn = build_model("small_cnn", 10, 1, input_size=(16, 16), width=4)
    assert "image_size" not in cnn.spec
    given = build_model("vit", 10, 1, input_size=(16, 16), image_size=8, **SMALL["vit"])
    assert given.spec["image_size"] == 8  # arch_kwargs win over the images' size


@pytest.mark.parametrize("channels", [1, 3])
def test_vit_round_trips_through_the_model_dataset(tmp_path, channels):
    from model_lifecycle.io import TorchModelDataset  # noqa: PLC0415

    torch.manual_seed(0)
    model = build_model("vit", 4, channels, input_size=(8, 8), **SMALL["vit"]).eval()
    dataset = TorchModelDataset(filepath=str(tmp_path / "vit.pt"))
    dataset.save(model)
    loaded = dataset.load()
    x = torch.rand(3, channels, 8, 8)
    assert loaded.spec == model.spec
    assert torch.equal(loaded(x), model(x))
