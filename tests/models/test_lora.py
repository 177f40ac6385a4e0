"""LoRA fine-tuning: what trains, what stays put, the merge, the adapter file, bad targets."""

from __future__ import annotations

import copy

import numpy as np
import pytest
import torch

from model_lifecycle.augment.config import AugmentParams, policy_from_artifact, resolve_policy
from model_lifecycle.data.imageset import ImageSet
from model_lifecycle.errors import LifecycleError
from model_lifecycle.io import LoraAdapterDataset
from model_lifecycle.models import build_model
from model_lifecycle.models.adapt import apply_strategy
from model_lifecycle.models.lora import (
    adapter_state_dict,
    add_lora,
    check_targets,
    default_targets,
    load_adapter,
    merge_lora,
)
from model_lifecycle.params import parse_params
from model_lifecycle.pipelines.finetune import nodes
from model_lifecycle.training.config import FinetuneParams, RuntimeParams
from model_lifecycle.training.finetune import finetune

MODELS = {"small_cnn": {"width": 4},
          "vit": {"depth": 2, "width": 24, "heads": 2, "mlp_dim": 48}}


def _model(arch: str, seed: int = 0):
    torch.manual_seed(seed)
    return build_model(arch, 3, 1, input_size=(8, 8), **MODELS[arch])


def _data(n=60, seed=0):
    rng = np.random.default_rng(seed)
    labels = np.repeat(np.arange(3), n // 3)
    images = rng.integers(0, 60, (n, 1, 8, 8), dtype=np.uint8)
    images[np.arange(n), 0, labels * 2, :] = 255  # a learnable stripe per class
    order = rng.permutation(n)
    splits = {"train_labeled": order[:36], "val": order[36:48], "test": order[48:]}
    return images, labels, splits


def _randomize_adapters(model, seed=1):
    # peft starts lora_B at zero (the update is zero); random values make merging real
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, parameter in model.named_parameters():
            if "lora_" in name:
                parameter.copy_(torch.randn(parameter.shape, generator=generator) * 0.1)


@pytest.mark.parametrize("arch", sorted(MODELS))
def test_only_adapters_and_head_train_and_frozen_weights_stay_bit_identical(arch):
    model = _model(arch)
    add_lora(model, rank=2, alpha=4)
    counts = apply_strategy(model, "lora")
    trainable = [n for n, p in model.named_parameters() if p.requires_grad]
    assert trainable and all("lora_" in n or n.startswith("head.") for n in trainable)
    assert {"head.weight", "head.bias"} <= set(trainable)
    assert counts["trainable_params"] == sum(p.numel() for p in model.parameters()
                                             if p.requires_grad) < counts["total_params"]
    frozen = {n: p.detach().clone() for n, p in model.named_parameters() if not p.requires_grad}
    buffers = {n: b.clone() for n, b in model.named_buffers()}  # batch-norm statistics
    adapters = {n: p.detach().clone() for n, p in model.named_parameters() if p.requires_grad}
    images, labels, splits = _data()
    params = FinetuneParams(init="scratch", strategy="lora", epochs=1, batch_size=12,
                            checkpoint=None)  # weight decay 5e-4 on: frozen weights must ignore it
    finetune(model, images, labels, splits, _policy(), params, RuntimeParams(num_threads=1),
             torch.device("cpu"))
    after = dict(model.named_parameters())
    assert all(torch.equal(frozen[n], after[n]) for n in frozen)
    assert all(torch.equal(buffers[n], b) for n, b in model.named_buffers())
    assert any(not torch.equal(adapters[n], after[n]) for n in adapters)


def _policy():
    return policy_from_artifact(resolve_policy(AugmentParams()), "supervised")


@pytest.mark.parametrize("arch", sorted(MODELS))
def test_the_merged_model_is_a_plain_classifier_with_the_same_outputs(arch):
    model = _model(arch)
    names = [n for n, _ in model.named_modules()]
    keys = list(model.state_dict())
    tuner = add_lora(model, rank=4, alpha=8)
    _randomize_adapters(model)
    x = torch.rand(5, 1, 8, 8)
    model.eval()
    with torch.no_grad():
        adapted = model(x)
        merged = merge_lora(tuner).eval()
        assert (merged(x) - adapted).abs().max().item() <= 1e-5
        assert not torch.allclose(merged(x), _model(arch).eval()(x))  # the update is in
    assert sorted(n for n, _ in merged.named_modules()) == sorted(names)
    assert sorted(merged.state_dict()) == sorted(keys)
    assert all(p.requires_grad for p in merged.parameters())
    twin = build_model(arch, 3, 1, input_size=(8, 8), **MODELS[arch])
    twin.load_state_dict(merged.state_dict())  # strict: the architecture it started as


def test_default_targets_leave_out_depthwise_convolutions_and_train():
    """peft adapts a grouped convolution only when the rank divides its groups."""
    model = build_model("mobilenet_v3_small", 3, 1)
    targets = default_targets(model)
    grouped = [n for n, m in model.named_modules()
               if isinstance(m, torch.nn.Conv2d) and m.groups > 1]
    assert grouped and targets and not set(grouped) & set(targets)
    add_lora(model, rank=4, alpha=8)
    model(torch.rand(2, 1, 16, 16)).sum().backward()


def test_default_targets_per_family():
    assert default_targets(_model("vit")) == ["self_attention", "mlp.0", "mlp.3"]
    cnn = _model("small_cnn")
    convs = [n for n, m in cnn.named_modules() if isinstance(m, torch.nn.Conv2d)]
    assert default_targets(cnn) == convs
    tuner = add_lora(cnn, rank=2, alpha=2)
    assert sorted(tuner.peft_config["default"].target_modules) == sorted(convs)
    assert not any("head" in n and "lora_" in n for n, _ in cnn.named_parameters())
    vit = _model("vit")
    add_lora(vit, rank=2, alpha=2)
    adapted = {n.rpartition(".lora_")[0] for n, _ in vit.named_parameters() if "lora_" in n}
    assert adapted == {f"encoder.stages.{i}.{layer}" for i in (1, 2)
                       for layer in ("self_attention", "mlp.0", "mlp.3")}


@pytest.mark.parametrize("arch", sorted(MODELS))
def test_the_adapter_round_trips_through_its_dataset_onto_the_base(tmp_path, arch):
    base = _model(arch)
    model = copy.deepcopy(base)
    add_lora(model, rank=2, alpha=4)
    _randomize_adapters(model)
    torch.nn.init.normal_(model.head.weight)
    dataset = LoraAdapterDataset(filepath=str(tmp_path / "adapter.safetensors"))
    metadata = {"strategy": "lora", "rank": 2, "alpha": 4.0, "target_modules":
                default_targets(base), "base": base.spec}
    dataset.save({"metadata": metadata, "tensors": adapter_state_dict(model)})
    loaded = dataset.load()
    assert loaded["metadata"] == metadata
    lora_keys = [k for k in loaded["tensors"] if "lora_" in k]
    assert lora_keys and set(loaded["tensors"]) == {*lora_keys, "head.weight", "head.bias"}
    total = sum(p.numel() for p in base.parameters())
    assert sum(t.numel() for t in loaded["tensors"].values()) < total / 2
    rebuilt = copy.deepcopy(base)
    tuner = load_adapter(rebuilt, loaded["tensors"], rank=2, alpha=4.0,
                         target_modules=loaded["metadata"]["target_modules"])
    x = torch.rand(4, 1, 8, 8)
    with torch.no_grad():
        assert torch.allclose(merge_lora(tuner).eval()(x), model.eval()(x), atol=1e-5)


def test_a_run_without_lora_writes_an_adapter_without_tensors(tmp_path):
    dataset = LoraAdapterDataset(filepath=str(tmp_path / "adapter.safetensors"))
    dataset.save({"metadata": {"strategy": "full"}, "tensors": {}})
    assert dataset.load() == {"metadata": {"strategy": "full"}, "tensors": {}}
    (tmp_path / "other.safetensors").write_bytes(b"not an adapter")
    with pytest.raises(Exception, match="is not a LoRA adapter saved by this project"):
        LoraAdapterDataset(filepath=str(tmp_path / "other.safetensors")).load()


@pytest.mark.parametrize(("arch", "pattern", "says"), [
    ("vit", "qkv", r"'qkv' matches no convolution, linear or attention layer of 'vit': use "
                   r"module names such as encoder.stages.0.proj, encoder.stages.1"),
    ("small_cnn", "mlp.0", r"'mlp.0' matches no .* of 'small_cnn': use module names such as "
                           r"encoder.stages.0.0.0"),
    ("small_cnn", "stages", r"'stages' matches no"),  # containers are no layer to adapt
    ("small_cnn", "0", r"'0' also matches encoder.stages.0, a Sequential that LoRA cannot "
                       r"adapt: name the layers inside it, e.g. encoder.stages.0.0.0"),
    ("small_cnn", "1.0", r"'1.0' also matches encoder.stages.1.0, a MaxPool2d that LoRA "
                         r"cannot adapt: give full names of the layers to adapt, e.g. "
                         r"encoder.stages.0.1.0"),  # a layer, not a container
    ("vit", "out_proj", r"matches encoder.stages.1.self_attention.out_proj, which its "
                        r"attention layer uses without calling it: target the attention "
                        r"layer \('self_attention'\)"),
])
def test_a_target_pattern_matching_no_layer_is_one_sentence(arch, pattern, says):
    with pytest.raises(LifecycleError, match=says):
        add_lora(_model(arch), rank=2, alpha=2, target_modules=["mlp.0", pattern]
                 if arch == "vit" else [pattern])
    with pytest.raises(LifecycleError, match=says):  # the preflight form: no weights built
        check_targets(arch, {**MODELS[arch], **({"image_size": 8} if arch == "vit" else {})},
                      [pattern])


def test_the_layers_a_bad_pattern_is_shown_can_all_be_targeted():
    with pytest.raises(LifecycleError) as refused:
        add_lora(_model("vit"), rank=2, alpha=2, target_modules=["qkv"])
    named = str(refused.value).partition("such as ")[2].rstrip(".").split(", ")
    assert "encoder.stages.1.self_attention" in named
    for name in named[:-1]:  # the last: "…"
        add_lora(_model("vit"), rank=2, alpha=2, target_modules=[name])  # no refusal


def test_a_rank_as_large_as_a_layer_is_named(caplog):
    add_lora(_model("vit"), rank=8, alpha=2)  # attention and MLP widths 24 and 48
    assert "full rank" not in caplog.text
    add_lora(_model("vit"), rank=24, alpha=2)
    assert ("finetune.lora.rank = 24 is at least the full rank of 6 of the 6 adapted layers "
            "(e.g. encoder.stages.1.self_attention: 24)") in caplog.text


def test_lora_parameters_are_checked_before_anything_runs():
    with pytest.raises(LifecycleError, match=r"'finetune.lora.rank' = 0 .*greater than or "
                       r"equal to 1"):
        parse_params(FinetuneParams, {"strategy": "lora", "lora": {"rank": 0}}, "finetune")
    with pytest.raises(LifecycleError, match=r"Unknown parameter 'finetune.lora.ranks'"):
        parse_params(FinetuneParams, {"lora": {"ranks": 4}}, "finetune")
    with pytest.raises(LifecycleError, match="target_modules must list non-empty"):
        parse_params(FinetuneParams, {"lora": {"target_modules": []}}, "finetune")
    # other strategies ignore the group: its defaults sit in every parameters file
    assert parse_params(FinetuneParams, {"strategy": "full", "lora": {"rank": 16}},
                        "finetune").strategy == "full"
    with pytest.raises(LifecycleError, match="holds no LoRA adapters"):
        apply_strategy(_model("small_cnn"), "lora")


@pytest.mark.parametrize(("lora_lr", "used"), [(None, 0.05), (0.2, 0.2)])
def test_lora_trains_at_its_own_learning_rate_when_one_is_set(monkeypatch, lora_lr, used):
    images, labels, splits = _data()
    imageset = ImageSet(images, labels, ("a", "b", "c"), "test")
    splits |= {"train_unlabeled": splits["train_labeled"][:0],
               "images_fingerprint": np.array(imageset.fingerprint())}
    seen = {}

    def spy(model, *args, **kwargs):  # what the training loop would be given
        seen["lr"] = args[4].optimizer.lr  # (images, labels, splits, policy, params, ...)
        raise RuntimeError("stop before training")

    monkeypatch.setattr(nodes, "finetune", spy)
    policy = resolve_policy(AugmentParams())
    params = {"init": "scratch", "arch": "small_cnn", "arch_kwargs": MODELS["small_cnn"],
              "strategy": "lora", "optimizer": {"lr": 0.05}, "lora": {"lr": lora_lr}}
    with pytest.raises(RuntimeError, match="stop before training"):
        nodes.finetune_with_adapter(imageset, splits, policy, None, params, {"device": "cpu"})
    assert seen["lr"] == used
    for strategy in ("full", "partial"):  # other strategies ignore lora.lr
        seen.clear()
        with pytest.raises(RuntimeError):
            nodes.finetune_with_adapter(imageset, splits, policy, None,
                                        {**params, "strategy": strategy}, {"device": "cpu"})
        assert seen["lr"] == 0.05
