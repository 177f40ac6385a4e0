"""The project's own Kedro datasets. Every save writes a temporary file and renames it,
so a crash mid-write never leaves a half-written "latest" version behind."""

from model_lifecycle.io.arrays import ImageSetDataset, NpzDataset
from model_lifecycle.io.json import JsonDataset
from model_lifecycle.io.torch_model import TorchModelDataset

__all__ = ["ImageSetDataset", "JsonDataset", "NpzDataset", "TorchModelDataset"]
