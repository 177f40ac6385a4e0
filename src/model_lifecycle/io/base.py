"""Shared machinery of the project's datasets: fsspec I/O, versioning, atomic writes,
and optional logging of each saved version to the active MLflow run."""

from __future__ import annotations

import logging
import os
import uuid
from copy import deepcopy
from pathlib import PurePosixPath
from typing import IO, Any, Generic, TypeVar

import fsspec
import mlflow
from kedro.io.core import (
    AbstractVersionedDataset,
    DatasetError,
    Version,
    get_filepath_str,
    get_protocol_and_path,
)

T = TypeVar("T")
log = logging.getLogger(__name__)


class AtomicFileDataset(AbstractVersionedDataset[T, T], Generic[T]):
    """One file per (version of a) dataset; subclasses write data to a file and read it back.

    ``mlflow_artifact_path``: when set, each saved file is also logged to the active
    MLflow run under that artifact folder. (kedro-mlflow's MlflowArtifactDataset
    cannot wrap a versioned dataset under Kedro 1.x: the wrapped dataset draws its
    own save version and the catalog refuses the mismatch.)
    """

    def __init__(self, *, filepath: str, version: Version | None = None,
                 credentials: dict[str, Any] | None = None,
                 fs_args: dict[str, Any] | None = None,
                 mlflow_artifact_path: str | None = None,
                 metadata: dict[str, Any] | None = None) -> None:
        protocol, path = get_protocol_and_path(filepath, version)
        fs_args = deepcopy(fs_args) or {}
        if protocol == "file":
            fs_args.setdefault("auto_mkdir", True)
        self._protocol = protocol
        self._fs = fsspec.filesystem(protocol, **(credentials or {}), **fs_args)
        self._mlflow_artifact_path = mlflow_artifact_path
        self._saved_version: str | None = None
        self.metadata = metadata
        super().__init__(filepath=PurePosixPath(path), version=version,
                         exists_function=self._fs.exists, glob_function=self._fs.glob)

    def _write(self, data: T, handle: IO[bytes]) -> None:
        raise NotImplementedError

    def _read(self, handle: IO[bytes], path: str) -> T:
        raise NotImplementedError

    def _check(self, data: T) -> None:
        """Refuse data that cannot be written, before any file is opened."""

    def load(self) -> T:
        path = get_filepath_str(self._get_load_path(), self._protocol)
        with self._fs.open(path, "rb") as handle:
            return self._read(handle, path)

    def save(self, data: T) -> None:
        path = get_filepath_str(self._get_save_path(), self._protocol)
        self._check(data)
        # Streamed to a temporary name that never matches the dataset's filename, so
        # Kedro's "latest version" lookup cannot pick up a partial write.
        tmp = f"{path}.tmp-{uuid.uuid4().hex}"
        try:
            with self._fs.open(tmp, "wb") as handle:
                self._write(data, handle)
                if self._protocol == "file":  # on disk before the rename makes it visible
                    handle.flush()
                    os.fsync(handle.fileno())
            self._fs.mv(tmp, path)
            if self._protocol == "file":  # the rename itself survives a power loss
                _fsync_folder(os.path.dirname(path))
        finally:
            if self._fs.exists(tmp):
                self._fs.rm(tmp)
        self._fs.invalidate_cache(get_filepath_str(self._filepath, self._protocol))
        self._saved_version = self.resolve_save_version()
        self._log_to_mlflow(path)

    def resolve_load_version(self) -> str | None:
        """The version to load: the one asked for (``--load-versions``), else the one this
        run saved, else the latest. A run reads back what it wrote itself, even when
        another run in the same project (a second terminal) has saved a newer version
        since; Kedro's own rule, the latest, would hand it the other run's."""
        if self._version and not self._version.load and self._saved_version:
            return self._saved_version
        return super().resolve_load_version()

    def _log_to_mlflow(self, path: str) -> None:
        if self._mlflow_artifact_path is None:
            return
        if mlflow.active_run() is None:
            log.debug("No active MLflow run: %s not logged", path)
            return
        if self._protocol != "file":
            raise DatasetError(f"mlflow_artifact_path needs a local filepath, got {path}")
        mlflow.log_artifact(path, artifact_path=self._mlflow_artifact_path)

    def _exists(self) -> bool:
        try:
            path = get_filepath_str(self._get_load_path(), self._protocol)
        except DatasetError:
            return False
        return self._fs.exists(path)

    def _describe(self) -> dict[str, Any]:
        return {"filepath": self._filepath, "protocol": self._protocol,
                "version": self._version}


def _fsync_folder(folder: str) -> None:
    handle = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(handle)
    finally:
        os.close(handle)
