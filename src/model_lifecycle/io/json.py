"""A JSON document, versioned and written atomically, optionally logged to MLflow."""

from __future__ import annotations

import json
from typing import IO, Any

from kedro.io.core import DatasetError

from model_lifecycle.io.base import AtomicFileDataset


class JsonDataset(AtomicFileDataset[Any]):
    """Example (``catalog.yml``)::

        augmentation_policy:
          type: model_lifecycle.io.JsonDataset
          filepath: data/05_model_input/augmentation_policy.json
          versioned: true
          mlflow_artifact_path: augment
    """

    def _write(self, data: Any, handle: IO[bytes]) -> None:
        handle.write((json.dumps(data, indent=2) + "\n").encode())

    def _read(self, handle: IO[bytes], path: str) -> Any:
        try:
            return json.loads(handle.read())
        except json.JSONDecodeError as exc:
            raise DatasetError(f"{path} is not valid JSON ({exc}); re-create it with "
                               "the pipeline that writes it.") from None
