"""Batch predictions with a registered model: load it by alias, predict files."""

from __future__ import annotations

from pathlib import Path

import mlflow
import pandas as pd
from mlflow.exceptions import MlflowException

from model_lifecycle.data.image_folder import files_under
from model_lifecycle.errors import LifecycleError
from model_lifecycle.serving.images import header_pixels
from model_lifecycle.serving.pyfunc import request_pixels


def registered_version(name: str, alias: str) -> str:
    """The number of the version of registered model ``name`` that holds ``alias``."""
    try:
        return str(mlflow.MlflowClient().get_model_version_by_alias(name, alias).version)
    except MlflowException:
        raise LifecycleError(
            f"No version of registered model '{name}' holds the alias '{alias}' in the "
            f"registry at {mlflow.get_registry_uri()}: run `kedro run` (or `kedro run "
            f"--pipelines=register`) first, or set register.model_name / "
            f"inference.alias.") from None


def load_registered(name: str, alias: str) -> tuple[mlflow.pyfunc.PyFuncModel, str]:
    """The version of registered model ``name`` that holds ``alias``, and its number."""
    version = registered_version(name, alias)
    # by number, so that an alias moved meanwhile cannot mix two versions in one answer
    return mlflow.pyfunc.load_model(f"models:/{name}/{version}"), version


def files_to_predict(folder: str | Path | None) -> tuple[list[Path], list[Path]]:
    """Every file under ``folder`` (recursively, hidden ones skipped) in name order, and
    those of them left out as never images (``notes.txt``, ``Thumbs.db`` …). A link to
    nothing is among the files: its row says so."""
    if folder is None:
        raise LifecycleError("inference.input_dir is not set: run `kedro run "
                             "--pipelines=inference --params=inference.input_dir=<folder>`.")
    folder = Path(folder)
    if not folder.is_dir():
        raise LifecycleError(f"inference.input_dir '{folder}' is not a folder: give the "
                             f"folder that holds the images to predict.")
    files, left_out = files_under(folder)
    if not files:
        also = (f" (left out as never images: {_some(left_out, folder)})" if left_out
                else "")
        raise LifecycleError(f"inference.input_dir '{folder}' holds no image files{also}: "
                             "put the images to predict in it.")
    return files, left_out


def _some(paths: list[Path], folder: Path, shown: int = 3) -> str:
    names = ", ".join(path.relative_to(folder).as_posix() for path in paths[:shown])
    return names + (f" and {len(paths) - shown} more" if len(paths) > shown else "")


def predict_files(model: mlflow.pyfunc.PyFuncModel, folder: str | Path, files: list[Path], *,
                  batch_size: int = 256) -> pd.DataFrame:
    """``file`` (relative to ``folder``), ``class``, ``confidence`` and ``error`` (why a
    file could not be read) for each of ``files``, read ``batch_size`` at a time (at most
    the model's ``max_rows``, the most images it answers in one call)."""
    python_model = model.unwrap_python_model()
    max_rows = getattr(python_model, "max_rows", None)
    batch_size = min(batch_size, max_rows or batch_size)
    max_pixels = request_pixels(getattr(python_model, "_prep", {}))
    tables = []
    for chunk, pixels in _chunks(files, batch_size, max_pixels):
        read, errors = {}, {}
        for i, path in enumerate(chunk):
            try:
                read[i] = path.read_bytes()
            except OSError as exc:  # a link to nothing, a file gone or not readable
                errors[i] = f"cannot read the file: {exc.strerror or exc}"
                continue
            if not read[i]:
                errors[i] = "the file is empty"
                del read[i]
        if max_pixels is not None and pixels > max_pixels:  # one image, alone over it
            errors[0] = (f"the image holds {pixels:,} pixels, more than the {max_pixels:,} "
                         "the model decodes for one call (register.max_request_pixels)")
            read = {}
        answer = pd.DataFrame({"class": [None] * len(chunk), "confidence": float("nan"),
                               "error": [errors.get(i) for i in range(len(chunk))]},
                              dtype=object)
        if read:
            answered = model.predict(pd.DataFrame({"image": list(read.values())}))
            answer.loc[list(read), ["class", "confidence", "error"]] = \
                answered[["class", "confidence", "error"]].to_numpy(dtype=object)
        answer["confidence"] = answer["confidence"].astype(float)
        answer.insert(0, "file", [path.relative_to(Path(folder)).as_posix() for path in chunk])
        tables.append(answer)
    return pd.concat(tables, ignore_index=True)


def _chunks(files: list[Path], size: int, max_pixels: int | None
            ) -> list[tuple[list[Path], int]]:
    """``files`` in calls of at most ``size`` files whose images hold at most
    ``max_pixels`` pixels together (the model's ``register.max_request_pixels``, read
    from the headers: a folder of large photos goes in smaller calls, not refused), each
    with its pixels (more than ``max_pixels`` only for one image over it by itself)."""
    chunks: list[tuple[list[Path], int]] = []
    for path in files:
        pixels = (header_pixels(path) or 0) if max_pixels is not None else 0
        if not chunks or len(chunks[-1][0]) == size \
                or (max_pixels is not None and chunks[-1][1] + pixels > max_pixels):
            chunks.append(([], 0))
        chunk, total = chunks[-1]
        chunk.append(path)
        chunks[-1] = (chunk, total + pixels)
    return chunks
