"""A table (pandas DataFrame) as CSV, versioned and written atomically, optionally
logged to MLflow, with a preview for kedro-viz."""

from __future__ import annotations

from typing import IO, Any

import pandas as pd
from kedro_datasets._typing import TablePreview  # the name kedro-viz recognises

from model_lifecycle.io.base import AtomicFileDataset


class TableDataset(AtomicFileDataset[pd.DataFrame]):
    """Example (``catalog.yml``)::

        evaluation_report:
          type: model_lifecycle.io.TableDataset
          filepath: data/08_reporting/evaluation_report.csv
          versioned: true
          mlflow_artifact_path: evaluate
          metadata:
            kedro-viz:
              layer: reporting
              preview_args: {nrows: 10}
    """

    def __init__(self, *, load_args: dict[str, Any] | None = None, **kwargs: Any) -> None:
        """``load_args`` go to ``pandas.read_csv`` (e.g. ``dtype: {class: str}``, so that
        class names that look like numbers stay names); the rest to the base class."""
        super().__init__(**kwargs)
        self._load_args = dict(load_args or {})

    def _write(self, data: pd.DataFrame, handle: IO[bytes]) -> None:
        handle.write(data.to_csv(index=False).encode())

    def _read(self, handle: IO[bytes], path: str) -> pd.DataFrame:
        return pd.read_csv(handle, **self._load_args)

    def preview(self, nrows: int = 10) -> TablePreview:
        """The first ``nrows`` rows in kedro-viz's table preview format."""
        return TablePreview(self.load().head(nrows).to_dict(orient="split"))
