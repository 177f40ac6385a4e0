"""ONNX for devices: float export, static INT8 for ONNX Runtime, checks and timing.

Float: ``torch.onnx.export`` (torch's default ``torch.export``-based exporter) at opset
:data:`OPSET`, batch axis dynamic, weights inside the file, so a phone or a board needs
one ``.onnx`` file and ONNX Runtime (or any ONNX runtime).

INT8: ONNX Runtime's post-training static quantization
(https://onnxruntime.ai/docs/performance/model-optimizations/quantization.html): the
float graph is pre-processed (``quant_pre_process``: ONNX shape inference and ORT's graph
optimisations, which fold batch norms into convolutions), then ``quantize_static``
calibrates activation ranges (min/max) on the caller's batches — the same training
batches the PyTorch INT8 model observes (:func:`~model_lifecycle.compression.int8.
calibration_batches`) — and quantizes weights per channel (symmetric INT8).

Why the QDQ format (QuantizeLinear/DequantizeLinear pairs around float operators) rather
than QOperator (QLinearConv … written into the file): the ORT docs make S8S8 in QDQ
their default and first choice on x86-64 (and S8S8 in QOperator slow there); every
runtime can read it (one that lacks an INT8 kernel runs the float operator between the
pairs, so the file stays correct everywhere); and ORT's CPU execution provider fuses the
pairs into its INT8 kernels when it loads the file, as its mobile and NPU providers do.

Export also moves each batch norm and ReLU that follows a max-pool to before it (exact,
see :func:`_pool_last`), so that ``fast_cnn`` quantizes into an all-INT8 chain.

The files describe themselves: export writes the source's ``spec`` and ``layer_sizes``
into the ONNX metadata and quantization adds its settings, so :class:`OnnxClassifier`
rebuilt from the bytes alone carries what the evaluation report needs.
"""

from __future__ import annotations

import contextlib
import copy
import hashlib
import json
import logging
import statistics
import tempfile
import time
import warnings
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import onnx
import onnxruntime as ort
import torch
from onnxruntime.quantization import (
    CalibrationDataReader,
    CalibrationMethod,
    QuantFormat,
    QuantType,
    quant_pre_process,
    quantize_static,
)
from torch import nn

from model_lifecycle.models.predict import predict
from model_lifecycle.models.structure import layer_sizes

# The lowest opset torch's exporter writes natively (torch >= 2.9 implements >= 18 only;
# asking for 17 means a down-conversion that fails on opset-18 ReduceMax/ReduceMean and
# leaves 18 anyway). ONNX Runtime runs opset 18 since 1.14 (mobile builds included); the
# per-channel QDQ that quantization writes needs >= 13.
OPSET = 18
INPUT, OUTPUT = "images", "logits"
# Metadata keys under which a file records where it came from.
_SPEC, _SIZES, _QUANTIZATION = ("model_lifecycle.spec", "model_lifecycle.layer_sizes",
                                "model_lifecycle.quantization")
_PREPROCESSING = "model_lifecycle.preprocessing"  # written at registration
_TRAINED_ON = "model_lifecycle.trained_on"  # written when the catalog saves the file
# Activations and weights signed (S8S8): the ORT docs' default for QDQ and their first
# choice on x86-64; measured on this project's x86 machine (AVX-512 VNNI) as fast as
# U8S8 with the same CIFAR-10 agreement, and the pair ARM's dot-product instructions
# (SDOT) take directly, where U8S8 needs the newer mixed-sign ones.
ACTIVATIONS = QuantType.QInt8
WEIGHTS = QuantType.QInt8


# Exports made in this process, by what determines them (see _export_key): one lifecycle
# run exports the fine-tuned model for ONNX INT8, for the ONNX check and for its
# registered version, and torch.export takes about a second each time.
_EXPORTS: dict[str, bytes] = {}
_EXPORTS_KEPT = 8


def export_onnx(model: nn.Module, example: torch.Tensor, *, opset: int = OPSET) -> bytes:
    """``model`` (left as it is) as an ONNX file: input ``images`` B×C×H×W float in
    [0, 1] with B dynamic, output ``logits``; eval mode, on the CPU. A model exported
    before in this process, with the same weights and structure, is not traced again."""
    key = _export_key(model, example, opset)
    if key not in _EXPORTS:
        _EXPORTS[key] = _export(model, example, opset)
        while len(_EXPORTS) > _EXPORTS_KEPT:
            _EXPORTS.pop(next(iter(_EXPORTS)))
    return _EXPORTS[key]


def _export_key(model: nn.Module, example: torch.Tensor, opset: int) -> str:
    """What an export depends on: the module tree as printed (classes, layer shapes),
    every parameter and buffer bit for bit, the spec, the image shape, the opset."""
    digest = hashlib.sha256()
    digest.update(repr(model).encode())
    digest.update(json.dumps([dict(getattr(model, "spec", {})), list(example.shape[1:]),
                              str(example.dtype), opset], sort_keys=True, default=str)
                  .encode())
    for name, tensor in model.state_dict().items():
        digest.update(name.encode())
        digest.update(str(tensor.dtype).encode())
        digest.update(tensor.detach().cpu().contiguous().view(-1).view(torch.uint8).numpy())
    return digest.hexdigest()


def _export(model: nn.Module, example: torch.Tensor, opset: int) -> bytes:
    source = copy.deepcopy(model).cpu().eval().to(memory_format=torch.contiguous_format)
    _pool_last(source)
    # torch.export fixes a dimension seen as 1, so the traced batch has two images.
    x = example[:1].detach().cpu().float().expand(2, *example.shape[1:]).contiguous()
    with _quiet_exporter():
        program = torch.onnx.export(
            source, (x,), dynamo=True, opset_version=opset, external_data=False,
            input_names=[INPUT], output_names=[OUTPUT], verbose=False,
            dynamic_shapes=({0: torch.export.Dim("batch")},))
    proto = program.model_proto
    _drop_trace_metadata(proto)
    _set_metadata(proto, {_SPEC: dict(getattr(model, "spec", {})),
                          _SIZES: getattr(model, "layer_sizes", None) or layer_sizes(model)})
    return proto.SerializeToString()


def _pool_last(model: nn.Module) -> None:
    """Move the batch norm and ReLU that follow a max-pool to before it (in place, eval
    mode), where the exporter folds the batch norm into the convolution before.

    Exact: a per-channel increasing map commutes with a maximum (ReLU always; a batch
    norm whose scales, weight / sqrt(var + eps), are all non-negative; one with a negative
    scale stays where it is). Why: ORT has no INT8 batch norm, and its INT8 max-pool
    needs the same quantization before and after (no ReLU range change in between); in
    ``fast_cnn``'s conv → pool → BN → ReLU blocks the INT8 graph would otherwise go back
    to float (and NCHW) at every block. Reordered, conv+BN+ReLU is one INT8 convolution
    and the pool stays INT8; the float graph loses a layer too.
    """
    for block in model.modules():
        if not isinstance(block, nn.Sequential):
            continue
        moved = True
        while moved:
            moved = False
            for i in range(len(block) - 1):
                if isinstance(block[i], nn.MaxPool2d) and _increasing(block[i + 1]):
                    block[i], block[i + 1] = block[i + 1], block[i]
                    moved = True


def _increasing(layer: nn.Module) -> bool:
    """Whether ``layer`` is a per-channel increasing map (so commutes with max-pooling)."""
    if isinstance(layer, nn.ReLU):
        return True
    if not isinstance(layer, nn.BatchNorm2d) or layer.running_var is None:
        return False  # without running statistics it normalises by the batch's own
    return layer.weight is None or bool((layer.weight >= 0).all())


def quantize_onnx(onnx_model: bytes, calibration: Iterable[torch.Tensor], *,
                  activation_type: QuantType = ACTIVATIONS) -> bytes:
    """A static INT8 (QDQ) copy of the float ONNX file ``onnx_model``: weights INT8 per
    channel, activation ranges the min/max seen over the float batches ``calibration``
    (B×C×H×W in [0, 1]); the same batches give the same file."""
    source = onnx.load_from_string(onnx_model)
    with tempfile.TemporaryDirectory(prefix="onnx-int8-") as folder:
        given, prepared, quantized = (Path(folder, name) for name in
                                      ("float.onnx", "prepared.onnx", "int8.onnx"))
        # A path, not the ModelProto: given a proto, ORT's pre-processing points the
        # weights at an external file it never writes.
        given.write_bytes(onnx_model)
        # ORT's symbolic shape inference (meant for transformers) stops at opset-18
        # ReduceMax; ONNX's own shape inference, which still runs, covers these CNNs.
        quant_pre_process(given, prepared, skip_symbolic_shape=True)
        quantize_static(
            prepared, quantized, _Batches(calibration), quant_format=QuantFormat.QDQ,
            per_channel=True, weight_type=WEIGHTS, activation_type=activation_type,
            calibrate_method=CalibrationMethod.MinMax,
            # ORT has no INT8 batch norm: one left unfolded (see _pool_last) runs in
            # float either way, so its weights are not rounded to INT8 for nothing.
            nodes_to_exclude=_nodes(onnx.load(prepared), "BatchNormalization"))
        proto = onnx.load(quantized)
    settings = {"mode": "static", "backend": "onnxruntime", "format": "QDQ",
                "activations": activation_type.name, "weights": f"{WEIGHTS.name} per channel",
                "calibration": "minmax", "opset": _opset(proto)}
    _set_metadata(proto, {**_metadata(source), _QUANTIZATION: settings})
    return proto.SerializeToString()


class OnnxClassifier(nn.Module):
    """An ONNX file run by ONNX Runtime on the CPU, usable where a model is expected:
    ``forward(x)`` takes float images and returns logits (no autograd, no parameters, so
    :func:`~model_lifecycle.models.predict.predict` runs it on the CPU).

    ``runtime`` is ``"onnxruntime"``; an INT8 file also gets ``quantization`` (its
    settings), the attribute that marks FX INT8 models as gradient-free. ``spec`` and
    ``layer_sizes`` come from the file (see :func:`export_onnx`) unless given.
    ``threads``: ORT's intra-op threads; None (default) follows torch's thread count
    (``runtime.num_threads`` in a run), as a PyTorch model in its place would.
    """

    runtime = "onnxruntime"

    def __init__(self, onnx_bytes: bytes, *, spec: dict[str, Any] | None = None,
                 threads: int | None = None) -> None:
        super().__init__()
        self.threads = threads
        proto = onnx.load_from_string(bytes(onnx_bytes))
        metadata = _metadata(proto)
        if _TRAINED_ON in metadata:  # bookkeeping of the catalog, not part of the model:
            # its size and identity are those of the file as the compress node made it
            kept = {k: v for k, v in _raw_metadata(proto).items() if k != _TRAINED_ON}
            del proto.metadata_props[:]
            onnx.helper.set_model_props(proto, kept)
            onnx_bytes = proto.SerializeToString()
        self.onnx_bytes = bytes(onnx_bytes)
        self.spec = dict(spec if spec is not None else metadata.get(_SPEC, {}))
        self.layer_sizes = metadata.get(_SIZES)
        if metadata.get(_QUANTIZATION):
            self.quantization = metadata[_QUANTIZATION]
        if metadata.get(_TRAINED_ON):  # the images and model it was made from (hooks.py)
            self.trained_on = metadata[_TRAINED_ON]
        self._session = self._open()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        images = x.detach().to("cpu", torch.float32).contiguous().numpy()
        (logits,) = self._session.run([OUTPUT], {INPUT: images})
        return torch.from_numpy(logits).to(x.device)

    # An ORT session cannot be copied or pickled: copies rebuild theirs from the bytes.
    def __getstate__(self) -> dict[str, Any]:
        state = self.__dict__.copy()
        state.pop("_session", None)
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)
        self._session = self._open()

    def _open(self) -> ort.InferenceSession:
        return session(self.onnx_bytes, threads=self.threads or torch.get_num_threads())


def session(onnx_bytes: bytes, *, threads: int = 1) -> ort.InferenceSession:
    """An ORT CPU session with ``threads`` intra-op threads and every graph optimisation
    (QDQ fusion into INT8 kernels, layout changes): how the files are meant to run."""
    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    options.log_severity_level = 3  # errors only: ORT's notes on unused initializers
    return ort.InferenceSession(onnx_bytes, options, providers=["CPUExecutionProvider"])


def agreement(source: nn.Module, exported: nn.Module, images: np.ndarray,
              indices: np.ndarray) -> dict[str, float]:
    """How closely ``exported`` follows ``source`` on ``images[indices]`` (uint8
    N×C×H×W): the share of images with the same top-1 class, and the largest difference
    of any class probability (softmax). NaN for no images."""
    if len(indices) == 0:
        return {"top1_agreement": float("nan"), "max_probability_difference": float("nan")}
    expected = torch.softmax(predict(source, images, indices), 1)
    actual = torch.softmax(predict(exported, images, indices), 1)
    return {"top1_agreement": float((expected.argmax(1) == actual.argmax(1)).float().mean()),
            "max_probability_difference": float((expected - actual).abs().max())}


def onnx_latencies_ms(model: OnnxClassifier | bytes, example: torch.Tensor, *,
                      batch_sizes: Iterable[int], threads: int = 1, warmup: int = 5,
                      repeats: int = 20) -> dict[int, dict[str, float]]:
    """ORT's counterpart of :func:`model_lifecycle.evaluation.cost.latencies_ms` (same
    arguments as its ``LatencyParams``): median and p95 milliseconds of ``session.run``
    at each batch size (images shaped like ``example``), after ``warmup`` untimed runs,
    in a fresh session with ``threads`` intra-op threads. ORT picks its own memory
    layouts, so there is no channels-last switch."""
    onnx_bytes = model if isinstance(model, bytes) else model.onnx_bytes
    timed = session(onnx_bytes, threads=threads)
    return {batch: _latency_ms(timed, example, batch, warmup, repeats)
            for batch in batch_sizes}


def _latency_ms(timed: ort.InferenceSession, example: torch.Tensor, batch: int,
                warmup: int, repeats: int) -> dict[str, float]:
    x = example[:1].float().expand(batch, *example.shape[1:]).contiguous().numpy()
    times = []
    for i in range(warmup + repeats):
        start = time.perf_counter()
        timed.run([OUTPUT], {INPUT: x})
        if i >= warmup:
            times.append((time.perf_counter() - start) * 1000)
    times.sort()  # the same median and p95 as cost.cpu_latency_ms
    return {"median": statistics.median(times),
            "p95": times[min(len(times) - 1, round(0.95 * (len(times) - 1)))]}


class _Batches(CalibrationDataReader):
    """The calibration batches as ORT's calibrator reads them (one pass)."""

    def __init__(self, batches: Iterable[torch.Tensor]) -> None:
        self._batches = iter(batches)

    def get_next(self) -> dict[str, np.ndarray] | None:
        batch = next(self._batches, None)
        if batch is None:
            return None
        return {INPUT: batch.detach().to("cpu", torch.float32).contiguous().numpy()}


def _drop_trace_metadata(proto: onnx.ModelProto) -> None:
    """Remove the exporter's per-node and per-tensor notes (source lines, FX names):
    of no use on a device, and a few per cent of an INT8 file."""
    for entry in [*proto.graph.node, *proto.graph.input, *proto.graph.output,
                  *proto.graph.value_info, *proto.graph.initializer]:
        del entry.metadata_props[:]
        entry.doc_string = ""


def with_preprocessing(onnx_model: bytes, preprocessing: dict[str, Any]) -> bytes:
    """``onnx_model`` with what a device needs besides the graph in its metadata: the
    class names (in logit order), the channels and size its images are resized to and
    how (key ``model_lifecycle.preprocessing``), and a doc string saying the contract."""
    proto = onnx.load_from_string(onnx_model)
    channels, (height, width) = preprocessing["channels"], preprocessing["size_hw"]
    proto.doc_string = (
        f"Input '{INPUT}': float32 B×{channels}×{height}×{width}, pixels / 255 (0 to 1), "
        f"images converted to {channels} channel(s) and resized to {height}×{width} "
        f"({preprocessing['resize']}, bilinear). Output '{OUTPUT}': B×"
        f"{len(preprocessing['class_names'])} logits (softmax for probabilities), in the "
        "order of class_names in the metadata entry model_lifecycle.preprocessing.")
    _set_metadata(proto, {_PREPROCESSING: {key: preprocessing[key] for key in (
        "class_names", "channels", "size_hw", "resize")}})
    return proto.SerializeToString()


def with_trained_on(onnx_model: bytes, trained_on: dict[str, Any] | None) -> bytes:
    """``onnx_model`` with ``trained_on`` (what the project's checks read: the images and
    models it was made from) in its metadata; as it is when there is none."""
    if not trained_on:
        return onnx_model
    proto = onnx.load_from_string(onnx_model)
    _set_metadata(proto, {_TRAINED_ON: trained_on})
    return proto.SerializeToString()


def _set_metadata(proto: onnx.ModelProto, entries: dict[str, Any]) -> None:
    onnx.helper.set_model_props(proto, {**_raw_metadata(proto),
                                        **{k: json.dumps(v) for k, v in entries.items()}})


def _raw_metadata(proto: onnx.ModelProto) -> dict[str, str]:
    return {prop.key: prop.value for prop in proto.metadata_props}


def _metadata(proto: onnx.ModelProto) -> dict[str, Any]:
    """This project's metadata entries of ``proto``, decoded."""
    raw = _raw_metadata(proto)
    return {key: json.loads(raw[key]) for key in (_SPEC, _SIZES, _QUANTIZATION, _TRAINED_ON)
            if key in raw}


def _nodes(proto: onnx.ModelProto, op_type: str) -> list[str]:
    return [node.name for node in proto.graph.node if node.op_type == op_type]


def _opset(proto: onnx.ModelProto) -> int:
    return next(entry.version for entry in proto.opset_import if entry.domain in ("", "ai.onnx"))


@contextlib.contextmanager
def _quiet_exporter() -> Iterator[None]:
    """The exporter reports each of its steps through warnings and logging; the result is
    checked against PyTorch instead (:func:`agreement`, the tests)."""
    exporter_log = logging.getLogger("torch.onnx")
    level = exporter_log.level
    exporter_log.setLevel(logging.ERROR)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)
            warnings.simplefilter("ignore", DeprecationWarning)
            yield
    finally:
        exporter_log.setLevel(level)
