"""A model of the registry as one file: its spec (architecture and arguments) and weights."""

from __future__ import annotations

from typing import IO

import torch
from kedro.io.core import DatasetError

from model_lifecycle.io.base import AtomicFileDataset
from model_lifecycle.models.classifier import Classifier
from model_lifecycle.models.registry import build_from_spec


class TorchModelDataset(AtomicFileDataset[Classifier]):
    """Saves ``{"spec", "state_dict"}`` with ``torch.save``; loads with
    ``weights_only=True`` (tensors and plain values only: a file cannot run code),
    rebuilds the architecture from the spec and loads the weights strictly.

    Example (``catalog.yml``)::

        finetuned_model:
          type: model_lifecycle.io.TorchModelDataset
          filepath: data/06_models/finetuned_model.pt
          versioned: true
    """

    def _write(self, data: Classifier, handle: IO[bytes]) -> None:
        state = {k: v.detach().cpu() for k, v in data.state_dict().items()}
        torch.save({"spec": data.spec, "state_dict": state}, handle)

    def _read(self, handle: IO[bytes], path: str) -> Classifier:
        try:
            saved = torch.load(handle, map_location="cpu", weights_only=True)
            model = build_from_spec(saved["spec"])
            model.load_state_dict(saved["state_dict"])
        except (RuntimeError, KeyError, TypeError, ValueError) as exc:
            raise DatasetError(f"{path} is not a model saved by this project ({exc}); "
                               "re-create it with the pipeline that writes it.") from None
        return model.eval()
