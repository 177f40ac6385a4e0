"""A model for ONNX Runtime as one ``.onnx`` file (its spec, layer sizes and quantization
settings ride in the file's metadata), loaded back as a model the pipelines can run."""

from __future__ import annotations

from typing import IO, Any

from kedro.io.core import DatasetError

from model_lifecycle.io.base import AtomicFileDataset


class OnnxModelDataset(AtomicFileDataset[Any]):
    """Saves an :class:`~model_lifecycle.compression.onnx.OnnxClassifier`'s file as it is
    (what a phone or a board runs), with what it was made from (``trained_on``) in its
    metadata; loads it into a new ``OnnxClassifier``.

    Example (``catalog.yml``)::

        onnx_int8_model:
          type: model_lifecycle.io.OnnxModelDataset
          filepath: data/06_models/onnx_int8_model.onnx
          versioned: true
    """

    def _check(self, data: Any) -> None:
        if not isinstance(getattr(data, "onnx_bytes", None), bytes):
            raise DatasetError(f"{type(data).__name__} holds no ONNX file (onnx_bytes): "
                               "save it with TorchModelDataset instead.")

    def _write(self, data: Any, handle: IO[bytes]) -> None:
        from model_lifecycle.compression.onnx import with_trained_on  # noqa: PLC0415

        handle.write(with_trained_on(data.onnx_bytes, getattr(data, "trained_on", None)))

    def _read(self, handle: IO[bytes], path: str) -> Any:
        from model_lifecycle.compression.onnx import OnnxClassifier  # noqa: PLC0415

        try:
            return OnnxClassifier(handle.read())
        except Exception as exc:  # onnx and onnxruntime raise their own types
            raise DatasetError(f"{path} is not an ONNX model ONNX Runtime can load "
                               f"({str(exc).splitlines()[0]}); re-create it with the "
                               "pipeline that writes it.") from None
