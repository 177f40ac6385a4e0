"""A LoRA adapter as one safetensors file: its tensors (LoRA weights and the head) and a
JSON description (how it was trained, what it adapts)."""

from __future__ import annotations

import json
import struct
from typing import IO, Any

from kedro.io.core import DatasetError

from model_lifecycle.io.base import AtomicFileDataset

FORMAT = "model-lifecycle-lora-adapter"
_KEY = "model_lifecycle"  # the safetensors metadata entry holding the description


class LoraAdapterDataset(AtomicFileDataset[dict[str, Any]]):
    """Saves and loads ``{"metadata": {...}, "tensors": {name: tensor}}``.

    safetensors holds tensors and strings only, so loading runs no code. A fine-tuning
    run without LoRA writes an adapter with no tensors and ``metadata["strategy"]`` its
    strategy: each version says what its run did, and the latest version is never an
    adapter of an earlier run.

    Example (``catalog.yml``)::

        lora_adapter:
          type: model_lifecycle.io.LoraAdapterDataset
          filepath: data/06_models/lora_adapter.safetensors
          versioned: true
          mlflow_artifact_path: finetune
    """

    def _check(self, data: dict[str, Any]) -> None:
        if set(data) != {"metadata", "tensors"}:
            raise DatasetError("A LoRA adapter is {'metadata': {...}, 'tensors': {...}}, "
                               f"got keys {sorted(data)}.")

    def _write(self, data: dict[str, Any], handle: IO[bytes]) -> None:
        from safetensors.torch import save  # noqa: PLC0415

        description = json.dumps({"format": FORMAT, **data["metadata"]})
        tensors = {key: value.detach().cpu().contiguous()
                   for key, value in data["tensors"].items()}
        handle.write(save(tensors, metadata={_KEY: description}))

    def _read(self, handle: IO[bytes], path: str) -> dict[str, Any]:
        from safetensors.torch import load  # noqa: PLC0415

        raw = handle.read()
        try:
            # the safetensors layout: an 8-byte little-endian header length, then the
            # JSON header whose "__metadata__" holds the string entries
            (length,) = struct.unpack("<Q", raw[:8])
            header = json.loads(raw[8:8 + length])
            metadata = json.loads(header["__metadata__"][_KEY])
            if metadata.pop("format") != FORMAT:
                raise ValueError("another format")
            tensors = load(raw)
        except (struct.error, ValueError, KeyError, TypeError) as exc:
            raise DatasetError(f"{path} is not a LoRA adapter saved by this project "
                               f"({exc}); re-create it with `kedro run --pipelines="
                               "finetune`.") from None
        return {"metadata": metadata, "tensors": tensors}
