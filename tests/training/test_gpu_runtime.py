"""The GPU recipe's runtime switches (``runtime.data_on_device``, ``runtime.compile``,
``runtime.tf32``): the same batches with the images resident on the device, augmentation
that stays on the images' device, compiled training that trains the model itself to the
eager result, and TF32 set on CUDA only.

CUDA cases run where a GPU is visible. Elsewhere the ``meta`` device stands in for it in
the placement test: an operation that mixes a CPU tensor into a batch on another device
fails there as it would on a GPU.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from model_lifecycle.augment.augmenter import BatchAugmenter
from model_lifecycle.augment.config import ViewPolicy
from model_lifecycle.training import device as device_module
from model_lifecycle.training.config import OptimizerParams, RuntimeParams, ScheduleParams
from model_lifecycle.training.data import BatchStream
from model_lifecycle.training.device import set_tf32
from model_lifecycle.training.loop import fit
from model_lifecycle.training.setup import prepare_runtime

DEVICES = ["cpu", pytest.param("cuda", marks=pytest.mark.skipif(
    not torch.cuda.is_available(), reason="no CUDA device"))]
AIRBENCH = {"random_crop": {"padding": 2}, "horizontal_flip": {}}  # the GPU recipe's policy
EVERYTHING = {"random_crop": {"padding": 2}, "horizontal_flip": {}, "auto_augment": {},
              "color_jitter": {}, "grayscale": {}, "gaussian_blur": {}, "random_erasing": {}}
SIMCLR = {"random_resized_crop": {"scale": [0.2, 1.0]}, "horizontal_flip": {},
          "color_jitter": {}, "grayscale": {}, "gaussian_blur": {}}
RANDAUGMENT = {"auto_augment": {"method": "rand_augment", "num_ops": 3}}


def _images(n: int = 50, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    return (rng.integers(0, 256, (n, 3, 8, 8), dtype=np.uint8),
            rng.integers(0, 10, n))


def _batches(stream: BatchStream, epochs: int = 2) -> list:
    return [(views, labels) for epoch in range(epochs) for views, labels in stream.epoch(epoch)]


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("policy", [AIRBENCH, EVERYTHING, None], ids=["airbench", "all", "none"])
@pytest.mark.parametrize("rank, world", [(0, 1), (1, 2)])
def test_images_on_the_device_give_the_batches_of_the_default_path(device, policy, rank,
                                                                   world):
    images, labels = _images()
    train = np.arange(3, 47)  # not all images: positions and image ids differ
    augment = None if policy is None else BatchAugmenter(ViewPolicy.model_validate(policy))
    kwargs = dict(batch_size=8, augment=augment, n_views=2, seed=5,
                  device=torch.device(device), channels_last=True, rank=rank,
                  world_size=world, drop_last=False)
    default = BatchStream(images, labels, train, **kwargs)
    resident = BatchStream(images, labels, train, on_device=True, **kwargs)
    assert resident.resident[0].device.type == device  # moved once, at construction
    expected, got = _batches(default), _batches(resident)
    assert len(got) == len(expected) > 0
    for (views, y), (device_views, device_y) in zip(expected, got, strict=True):
        assert torch.equal(device_y, y)
        for view, device_view in zip(views, device_views, strict=True):
            assert device_view.device.type == device
            assert device_view.is_contiguous(memory_format=torch.channels_last)
            # the same draws; a GPU may resample or round the last bit differently
            torch.testing.assert_close(device_view, view, atol=1e-5, rtol=0)


def test_images_on_the_device_from_a_memory_map(tmp_path):
    images, labels = _images()
    np.save(tmp_path / "pixels.npy", images)
    mapped = np.load(tmp_path / "pixels.npy", mmap_mode="r")
    kwargs = dict(batch_size=8, augment=BatchAugmenter(ViewPolicy.model_validate(AIRBENCH)),
                  seed=2)
    expected = _batches(BatchStream(images, labels, np.arange(40), **kwargs))
    got = _batches(BatchStream(mapped, labels, np.arange(40), on_device=True, **kwargs))
    for (views, y), (mapped_views, mapped_y) in zip(expected, got, strict=True):
        assert torch.equal(mapped_y, y) and torch.equal(mapped_views[0], views[0])


@pytest.mark.parametrize("policy", [AIRBENCH, EVERYTHING, SIMCLR, RANDAUGMENT],
                         ids=["airbench", "all", "simclr", "randaugment"])
def test_augmentation_keeps_to_the_images_device(policy):
    batch = torch.zeros(32, 3, 16, 16, dtype=torch.uint8, device="meta")
    out = BatchAugmenter(ViewPolicy.model_validate(policy))(batch,
                                                            torch.Generator().manual_seed(0))
    assert out.device.type == "meta" and out.shape == batch.shape


def _tiny_model() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Conv2d(3, 6, 3, padding=1), nn.BatchNorm2d(6), nn.ReLU(),
                         nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(6, 10))


def _fit(model: nn.Module, *, compile_model: bool) -> None:
    images, labels = _images(64)
    stream = BatchStream(images, labels, np.arange(64), batch_size=16,
                         augment=BatchAugmenter(ViewPolicy.model_validate(AIRBENCH)), seed=1)

    def loss(module, views, y):
        return F.cross_entropy(module(views[0]), y), {}

    fit(model, loss, stream, epochs=2, optimizer=OptimizerParams(lr=0.1),
        schedule=ScheduleParams(kind="cosine", warmup_epochs=0), seed=0,
        compile_model=compile_model)


def test_compiled_training_trains_the_model_to_the_eager_result(monkeypatch):
    # Inductor's C++ code generation takes about a minute for the smallest model on
    # this project's 2-core CI; ``aot_eager`` runs the same graph capture (TorchDynamo)
    # and autograd tracing (AOTAutograd) without it, so the test exercises compiled
    # training, not the C++ compiler.
    calls = []
    real_compile = torch.compile

    def compile_for_test(module, **kwargs):
        calls.append(module)
        return real_compile(module, backend="aot_eager", **kwargs)

    monkeypatch.setattr(torch, "compile", compile_for_test)
    torch._dynamo.reset()
    eager, compiled = _tiny_model(), _tiny_model()
    _fit(eager, compile_model=False)
    assert calls == []
    _fit(compiled, compile_model=True)
    assert calls == [compiled]  # the model itself, compiled once
    before = _tiny_model().state_dict()
    for name, tensor in compiled.state_dict().items():
        if tensor.is_floating_point():
            assert not torch.equal(tensor, before[name]), name  # the model itself trained
            torch.testing.assert_close(tensor, eager.state_dict()[name], atol=1e-4,
                                       rtol=1e-4)


def test_the_compiled_module_shares_the_models_weights():
    # torch.compile is lazy: nothing compiles until the compiled module is called
    module = nn.Linear(2, 2)
    compiled = device_module.compiled(module)
    assert compiled is not module
    assert [p.data_ptr() for p in compiled.parameters()] == \
        [p.data_ptr() for p in module.parameters()]


@pytest.fixture
def restore_tf32():
    saved = torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32
    yield
    torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = saved


@pytest.mark.usefixtures("restore_tf32")
def test_tf32_switches_matrix_products_and_back_to_the_defaults():
    set_tf32(True)
    assert torch.backends.cuda.matmul.allow_tf32 and torch.backends.cudnn.allow_tf32
    set_tf32(False)
    assert not torch.backends.cuda.matmul.allow_tf32  # PyTorch's defaults
    assert torch.backends.cudnn.allow_tf32


@pytest.mark.usefixtures("restore_tf32")
def test_tf32_is_left_alone_on_the_cpu():
    torch.backends.cuda.matmul.allow_tf32 = False
    assert prepare_runtime(RuntimeParams(device="cpu", tf32=True)).type == "cpu"
    assert not torch.backends.cuda.matmul.allow_tf32


def test_runtime_switches_default_off():
    runtime = RuntimeParams()
    assert (runtime.compile, runtime.data_on_device, runtime.tf32) == (False, False, False)

