"""The project's own Kedro datasets. Every save writes a temporary file and renames it,
so a crash mid-write never leaves a half-written "latest" version behind.

Imported lazily: the array and JSON datasets need no torch, so a catalog that only
touches them (``kedro run --pipelines=ingest``) never imports it.
"""

from importlib import import_module

_WHERE = {
    "ImageSetDataset": "model_lifecycle.io.arrays",
    "NpzDataset": "model_lifecycle.io.arrays",
    "JsonDataset": "model_lifecycle.io.json",
    "LoraAdapterDataset": "model_lifecycle.io.lora_adapter",
    "OnnxModelDataset": "model_lifecycle.io.onnx_model",
    "TableDataset": "model_lifecycle.io.table",
    "TorchModelDataset": "model_lifecycle.io.torch_model",
}
__all__ = ["ImageSetDataset", "JsonDataset", "LoraAdapterDataset", "NpzDataset",
           "OnnxModelDataset", "TableDataset", "TorchModelDataset"]


def __getattr__(name: str):
    if name in _WHERE:
        return getattr(import_module(_WHERE[name]), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
