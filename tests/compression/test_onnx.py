"""ONNX export, ONNX Runtime INT8, and their checks against PyTorch
(``model_lifecycle.compression.onnx``)."""

import copy
import math

import numpy as np
import onnx
import pytest
import torch
import torch.nn.functional as F

from model_lifecycle.compression import onnx as onnx_module
from model_lifecycle.compression.int8 import calibration_batches
from model_lifecycle.compression.onnx import (
    OPSET,
    OnnxClassifier,
    agreement,
    export_onnx,
    onnx_latencies_ms,
    quantize_onnx,
)
from model_lifecycle.compression.prune import prune_structured
from model_lifecycle.evaluation.config import LatencyParams
from model_lifecycle.models import build_model
from model_lifecycle.models.predict import predict
from model_lifecycle.trust.explain import is_int8

SIZE = 16


def _bars(n: int = 240, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Noise images whose class (0, 1, 2) is the row of a bright bar."""
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, 3, n)
    images = rng.integers(0, 80, (n, 3, SIZE, SIZE), dtype=np.uint8)
    images[np.arange(n), :, 2 + labels * 5, :] = 255
    return images, labels


TRAIN, TEST = np.arange(0, 160), np.arange(160, 240)


@pytest.fixture(scope="module")
def data() -> tuple[np.ndarray, np.ndarray]:
    return _bars()


@pytest.fixture(scope="module")
def trained(data) -> torch.nn.Module:
    """small_cnn trained briefly on the bars: confident enough for INT8 to agree."""
    images, labels = data
    torch.manual_seed(0)
    model = build_model("small_cnn", 3, 3, width=8)
    optimizer = torch.optim.Adam(model.parameters(), lr=0.01)
    x = torch.from_numpy(images[TRAIN]).float() / 255
    y = torch.from_numpy(labels[TRAIN])
    for step in range(40):
        batch = slice(step % 5 * 32, step % 5 * 32 + 32)
        optimizer.zero_grad()
        F.cross_entropy(model(x[batch]), y[batch]).backward()
        optimizer.step()
    return model.eval()


@pytest.fixture(scope="module")
def trained_onnx(trained) -> bytes:
    return export_onnx(trained, torch.rand(1, 3, SIZE, SIZE))


@pytest.fixture(scope="module")
def calibration(data) -> list[torch.Tensor]:
    return calibration_batches(data[0], TRAIN, batches=2, batch_size=16, seed=0)


@pytest.fixture(scope="module")
def trained_int8(trained_onnx, calibration) -> bytes:
    return quantize_onnx(trained_onnx, calibration)


def _fast_cnn() -> torch.nn.Module:
    """fast_cnn with batch-norm statistics and scales set: positive scales (which export
    moves before the max-pools) but one negative scale in the last block (which must
    stay where it is)."""
    torch.manual_seed(1)
    model = build_model("fast_cnn", 4, 3, widths=[8, 8, 16, 16])
    for norm in model.modules():
        if isinstance(norm, torch.nn.BatchNorm2d):
            norm.running_mean.uniform_(-0.5, 0.5)
            norm.running_var.uniform_(0.5, 2)
            norm.weight.data.uniform_(0.5, 1.5)
            norm.bias.data.uniform_(-0.2, 0.2)
    model.encoder.stages[3][2].weight.data[3] = -0.7
    return model.eval()


def _pruned() -> torch.nn.Module:
    torch.manual_seed(2)
    model = build_model("small_cnn", 3, 3, width=8).eval()
    pruned, _ = prune_structured(model, torch.rand(1, 3, SIZE, SIZE), target=2.0, steps=1)
    return pruned


def _outputs(model: torch.nn.Module, x: torch.Tensor) -> torch.Tensor:
    with torch.no_grad():
        return model(x)


def test_float_export_matches_pytorch_at_any_batch_size(trained, trained_onnx):
    exported = OnnxClassifier(trained_onnx)
    for batch in (1, 3, 50):
        x = torch.rand(batch, 3, SIZE, SIZE)
        assert exported(x).shape == (batch, 3)
        torch.testing.assert_close(exported(x), _outputs(trained, x), rtol=0, atol=1e-4)
    proto = onnx.load_from_string(trained_onnx)
    assert [entry.version for entry in proto.opset_import if entry.domain == ""] == [OPSET]


@pytest.mark.parametrize("make", [_fast_cnn, _pruned], ids=["fast_cnn", "pruned"])
def test_export_leaves_the_source_unchanged_and_matches_it(make):
    model = make().train()  # in training mode, as a caller may leave it
    before = copy.deepcopy(model.state_dict())
    layout = str(model)
    onnx_bytes = export_onnx(model, torch.rand(2, 3, SIZE, SIZE))
    assert model.training and str(model) == layout
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())
    x = torch.rand(5, 3, SIZE, SIZE)
    torch.testing.assert_close(OnnxClassifier(onnx_bytes)(x), _outputs(model.eval(), x),
                               rtol=0, atol=1e-4)
    if make is _fast_cnn:  # the batch norms with positive scales were folded, not the other
        ops = [node.op_type for node in onnx.load_from_string(onnx_bytes).graph.node]
        assert ops.count("BatchNormalization") == 1


def test_int8_agrees_with_float_and_is_smaller(data, trained, trained_onnx, trained_int8):
    images, labels = data
    int8 = OnnxClassifier(trained_int8)
    assert float((predict(trained, images, TEST).argmax(1).numpy() == labels[TEST]).mean()) > 0.9
    checks = agreement(trained, int8, images, TEST)
    assert checks["top1_agreement"] >= 0.9
    assert 0 < checks["max_probability_difference"] < 0.5
    assert len(trained_int8) < 0.5 * len(trained_onnx)
    ops = {node.op_type for node in onnx.load_from_string(trained_int8).graph.node}
    assert {"QuantizeLinear", "DequantizeLinear"} <= ops


def test_calibration_is_deterministic_and_matters(data, trained_onnx, trained_int8):
    images = data[0]
    again = calibration_batches(images, TRAIN, batches=2, batch_size=16, seed=0)
    other = calibration_batches(images, TRAIN, batches=2, batch_size=16, seed=1)
    assert quantize_onnx(trained_onnx, again) == trained_int8
    assert quantize_onnx(trained_onnx, other) != trained_int8


def test_onnx_models_carry_their_description_and_no_gradients(trained, trained_onnx,
                                                              trained_int8):
    float_model, int8 = OnnxClassifier(trained_onnx), OnnxClassifier(trained_int8)
    for exported in (float_model, int8):
        assert exported.runtime == "onnxruntime" and not list(exported.parameters())
        assert exported.spec == trained.spec and exported.layer_sizes
        assert not exported(torch.rand(2, 3, SIZE, SIZE, requires_grad=True)).requires_grad
    assert not hasattr(float_model, "quantization")
    assert int8.quantization["backend"] == "onnxruntime"
    assert int8.quantization["mode"] == "static" and int8.quantization["format"] == "QDQ"
    assert is_int8(int8)  # explanations then use gradient-free methods only
    assert OnnxClassifier(trained_onnx, spec={"arch": "other"}).spec == {"arch": "other"}


def test_onnx_models_copy_and_pickle_without_their_session(trained_int8):
    import pickle  # noqa: PLC0415

    int8 = OnnxClassifier(trained_int8, threads=2)
    x = torch.rand(3, 3, SIZE, SIZE)
    for twin in (copy.deepcopy(int8), pickle.loads(pickle.dumps(int8))):
        assert twin.threads == 2 and twin.quantization == int8.quantization
        assert torch.equal(twin(x), int8(x))


def test_onnx_models_use_torchs_threads_unless_told(trained_int8):
    before = torch.get_num_threads()
    try:
        for threads in (1, 2):
            torch.set_num_threads(threads)  # what runtime.num_threads sets in a run
            options = OnnxClassifier(trained_int8)._session.get_session_options()
            assert options.intra_op_num_threads == threads
        told = OnnxClassifier(trained_int8, threads=1)._session.get_session_options()
        assert told.intra_op_num_threads == 1
    finally:
        torch.set_num_threads(before)


def test_agreement_of_a_model_with_its_export_and_with_another(data, trained, trained_onnx):
    images = data[0]
    same = agreement(trained, OnnxClassifier(trained_onnx), images, TEST)
    assert same["top1_agreement"] == 1.0 and same["max_probability_difference"] < 1e-5
    other = copy.deepcopy(trained)
    with torch.no_grad():  # the classes' outputs rotated: every prediction changes
        other.head.weight.copy_(other.head.weight.roll(1, 0))
        other.head.bias.copy_(other.head.bias.roll(1, 0))
    differs = agreement(trained, other, images, TEST)
    assert differs["top1_agreement"] == 0.0 and differs["max_probability_difference"] > 0.5
    empty = agreement(trained, other, images, TEST[:0])
    assert all(math.isnan(value) for value in empty.values())


def test_onnx_latencies_have_the_shape_of_torch_latencies(trained_onnx):
    params = LatencyParams(batch_sizes=(1, 4), warmup=1, repeats=3)
    for model in (OnnxClassifier(trained_onnx), trained_onnx):
        timings = onnx_latencies_ms(model, torch.rand(1, 3, SIZE, SIZE),
                                    batch_sizes=params.batch_sizes, warmup=params.warmup,
                                    repeats=params.repeats)
        assert sorted(timings) == [1, 4]
        for timing in timings.values():
            assert set(timing) == {"median", "p95"} and 0 < timing["median"] <= timing["p95"]


def test_a_model_exported_again_unchanged_is_not_traced_again(monkeypatch):
    traced = []
    real = torch.onnx.export
    monkeypatch.setattr(torch.onnx, "export", lambda *a, **k: traced.append(1) or real(*a, **k))
    monkeypatch.setattr(onnx_module, "_EXPORTS", {})
    torch.manual_seed(0)
    model = build_model("small_cnn", 3, 3, width=4).eval()
    first = export_onnx(model, torch.rand(1, 3, SIZE, SIZE))
    assert export_onnx(copy.deepcopy(model), torch.rand(3, 3, SIZE, SIZE)) == first
    assert len(traced) == 1
    with torch.no_grad():  # one weight changed: a new export, and it holds the new weight
        model.head.bias[0] += 1
    changed = export_onnx(model, torch.rand(1, 3, SIZE, SIZE))
    assert len(traced) == 2 and changed != first
    x = torch.rand(2, 3, SIZE, SIZE)
    with torch.no_grad():
        assert np.allclose(OnnxClassifier(changed)(x).numpy(), model(x).numpy(), atol=1e-4)
    pruned, _ = prune_structured(model, torch.rand(2, 3, SIZE, SIZE), target=2.0)
    assert export_onnx(pruned, torch.rand(1, 3, SIZE, SIZE)) != changed  # other shapes
    assert len(traced) == 3


def test_an_onnx_model_is_timed_with_the_threads_the_others_get(trained_int8, monkeypatch):
    """evaluate.latency.threads applies to the ONNX variants as to the PyTorch ones: the
    copy timed opens its session with those threads, not torch's count before timing."""
    from model_lifecycle.evaluation.cost import latencies_ms  # noqa: PLC0415

    opened = []
    real = onnx_module.session
    monkeypatch.setattr(onnx_module, "session",
                        lambda data, *, threads=1: opened.append(threads) or real(
                            data, threads=threads))
    model = OnnxClassifier(trained_int8)
    before = torch.get_num_threads()
    try:
        torch.set_num_threads(2)
        opened.clear()
        latencies_ms(model, torch.rand(1, 3, SIZE, SIZE),
                     LatencyParams(batch_sizes=(1,), warmup=0, repeats=3, threads=1))
    finally:
        torch.set_num_threads(before)
    assert opened and set(opened) == {1}


def test_what_a_file_was_made_from_rides_along_without_changing_it(trained_int8, tmp_path):
    """The catalog writes `trained_on` into the file's metadata; loaded back, the model
    has it, and its bytes (size, identity) are those the compress node made."""
    from model_lifecycle.io import OnnxModelDataset  # noqa: PLC0415
    from model_lifecycle.models.structure import weights_id  # noqa: PLC0415

    model = OnnxClassifier(trained_int8)
    model.trained_on = {"images": "f-1", "model_id": weights_id(model),
                        "made_from": {"finetuned_model": "m-1"}}
    dataset = OnnxModelDataset(filepath=str(tmp_path / "model.onnx"))
    dataset.save(model)
    assert (tmp_path / "model.onnx").stat().st_size > len(model.onnx_bytes)
    back = dataset.load()
    assert back.trained_on == model.trained_on
    assert back.onnx_bytes == model.onnx_bytes
    assert weights_id(back) == back.trained_on["model_id"]
