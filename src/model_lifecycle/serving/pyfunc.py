"""The registered model: an MLflow pyfunc that takes raw images and answers class names
and probabilities, applying the training data's preprocessing itself.

An explicit pyfunc rather than kedro-mlflow's ``pipeline_ml_factory``: that route logs
a whole Kedro inference pipeline (catalog included) as the model, and with Kedro ≥ 1.3.1
its model logging was silently skipped (kedro-mlflow issue #690). A pyfunc holding the
model file and its preprocessing is smaller, serves raw images directly, and the tests
prove that it is registered and served.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import mlflow
import numpy as np
import pandas as pd
from mlflow.exceptions import MlflowException
from mlflow.models import ModelSignature
from mlflow.protos.databricks_pb2 import INVALID_PARAMETER_VALUE
from mlflow.types.schema import AnyType, ColSpec, Map, Schema

# A request is a table with one image per row, in either column:
#   image:  the bytes of an image file (PNG, JPEG, …); base64 text in a JSON request
#   pixels: a uint8 array H×W or H×W×C (C = 1, 3 or 4), as nested lists in a JSON request
# Both columns are typed "any": with "binary" and an array of longs MLflow's server decodes
# and converts every value before the model sees it, so one null, float or H×W row (or a
# base64 string in an `inputs` / `instances` request) failed the whole request with
# MLflow's own message; the model checks each row itself and answers a bad one with its
# `error`.
SIGNATURE = ModelSignature(
    inputs=Schema([ColSpec(AnyType(), "image", required=False),
                   ColSpec(AnyType(), "pixels", required=False)]),
    outputs=Schema([ColSpec("string", "class"), ColSpec("double", "confidence"),
                    ColSpec(Map("double"), "probabilities"),
                    ColSpec("string", "error", required=False)]),
)
COLUMNS = ("image", "pixels")


class RequestRefused(MlflowException):
    """A request refused as a whole: HTTP 400 from ``mlflow models serve``, whose JSON
    ``message`` is the one sentence given.

    The scoring server rewrites the message of an ``MlflowException`` raised by
    ``predict`` to ``Failed to predict data '<the whole input table>'. Error: …`` — for a
    refused 1,001-row request, a page of base64; this exception keeps its sentence.
    """

    def __init__(self, sentence: str) -> None:
        super().__init__(sentence, error_code=INVALID_PARAMETER_VALUE)

    @property
    def message(self) -> str:
        return self._sentence

    @message.setter
    def message(self, value: str) -> None:
        # set once, by MlflowException.__init__; the scoring server's rewrite is dropped
        if not hasattr(self, "_sentence"):
            self._sentence = value


class ImageClassifier(mlflow.pyfunc.PythonModel):
    """Artifacts: ``model`` (a file saved by ``TorchModelDataset``, or an ``.onnx`` file run
    by ONNX Runtime), ``onnx`` (a float model's ONNX export, for devices; not used here)
    and ``preprocessing`` (JSON: ``class_names``, ``channels``, ``size_hw``, ``resize``,
    ``max_pixels``, ``max_rows``, ``max_request_pixels``).

    ``predict`` returns one row per input row: ``class``, ``confidence``,
    ``probabilities`` (class name → probability) and ``error`` — the reason when that
    row's image could not be read (the other rows are still answered, and the failed
    row's other fields are null). A table with neither an ``image`` nor a ``pixels``
    column, with more than ``max_rows`` rows, or whose images hold more than
    ``max_request_pixels`` pixels together, is refused as a whole
    (:class:`RequestRefused`, HTTP 400 when served).
    """

    def load_context(self, context: mlflow.pyfunc.PythonModelContext) -> None:
        import torch  # noqa: PLC0415

        from model_lifecycle.io.onnx_model import OnnxModelDataset  # noqa: PLC0415
        from model_lifecycle.io.torch_model import TorchModelDataset  # noqa: PLC0415

        self._torch = torch
        path = context.artifacts["model"]
        dataset = OnnxModelDataset if path.endswith(".onnx") else TorchModelDataset
        # channels-last, the layout the evaluation timed every variant in
        self._model = dataset(filepath=path).load().to(memory_format=torch.channels_last)
        self._prep = json.loads(Path(context.artifacts["preprocessing"]).read_text())
        # the most rows one predict call (one HTTP request) answers; None in versions
        # registered before the limit existed
        self.max_rows: int | None = self._prep.get("max_rows")

    def predict(self, context: Any, model_input: pd.DataFrame,
                params: dict[str, Any] | None = None) -> pd.DataFrame:
        from model_lifecycle.data.convert import ImageDecodeError  # noqa: PLC0415
        from model_lifecycle.serving.images import to_model_input  # noqa: PLC0415

        prep = self._prep
        model_input = _one_image_per_row(model_input)
        _check_request(model_input, self.max_rows)
        # versions registered before the limit existed decode with the default one
        limit = {"max_pixels": prep["max_pixels"]} if "max_pixels" in prep else {}
        arrays, errors = [], {}
        images = _images(model_input)
        _check_pixels(images, request_pixels(prep))
        for i, image in enumerate(images):
            try:
                if isinstance(image, ImageDecodeError):
                    raise image
                arrays.append(to_model_input(image, tuple(prep["size_hw"]), prep["channels"],
                                             prep["resize"], **limit))
            except ImageDecodeError as exc:
                errors[i] = str(exc)
            except Exception as exc:  # one odd value must not fail the request's other rows
                errors[i] = f"not a usable image ({type(exc).__name__})"
        probabilities = self.probabilities(np.stack(arrays)) if arrays else np.empty((0, 0))
        names, rows, good = prep["class_names"], [], iter(probabilities)
        for i in range(len(model_input)):
            if i in errors:
                rows.append({"class": None, "confidence": None, "probabilities": None,
                             "error": errors[i]})
                continue
            p = next(good)
            rows.append({"class": names[int(p.argmax())], "confidence": float(p.max()),
                         "probabilities": dict(zip(names, map(float, p), strict=True)),
                         "error": None})
        # object columns: a missing value stays None, which JSON writes as null (pandas'
        # string and float columns would turn it into NaN, which strict JSON refuses)
        return pd.DataFrame(rows, columns=["class", "confidence", "probabilities", "error"],
                            dtype=object)

    def probabilities(self, images: np.ndarray, batch_size: int = 256) -> np.ndarray:
        """Softmax outputs for uint8 N×C×H×W images already preprocessed."""
        torch = self._torch
        out = []
        with torch.inference_mode():
            for start in range(0, len(images), batch_size):
                x = (torch.from_numpy(images[start:start + batch_size]).float() / 255
                     ).contiguous(memory_format=torch.channels_last)
                out.append(torch.softmax(self._model(x).float(), 1).numpy())
        return np.concatenate(out)


def _one_image_per_row(table: pd.DataFrame) -> pd.DataFrame:
    """The table with one image per row. MLflow hands the columnar JSON forms
    (``{"inputs": {"image": [a, b]}}``, the same under ``instances``) over as one row
    whose ``image`` cell is the list of every image; TensorFlow Serving's convention
    ``{"b64": "…"}`` for binary values is unwrapped too."""
    if "image" in table.columns and len(table) == 1 and "pixels" not in table.columns:
        cell = table["image"].iloc[0]
        if isinstance(cell, list | tuple | np.ndarray) and all(
                isinstance(item, str | bytes | dict) for item in cell):
            table = pd.DataFrame({"image": list(cell)})  # none at all: no row to answer
    if "image" in table.columns:
        table = table.assign(image=[value["b64"] if isinstance(value, dict)
                                    and set(value) == {"b64"} else value
                                    for value in table["image"]])
    return table


def _check_request(table: pd.DataFrame, max_rows: int | None) -> None:
    """Refuse a table no row of which can be answered, or one too long to answer."""
    if not any(column in table.columns for column in COLUMNS):
        # MLflow drops the columns the signature does not name before predict is called
        # (and with them the rows, when no column is left: an empty `dataframe_records`
        # list and a table of unknown columns look alike, and both get this sentence)
        raise RequestRefused(
            "The request has neither an 'image' column (the base64 of an image file's bytes) "
            "nor a 'pixels' column (uint8 arrays H×W×C): this model reads those two columns "
            "and ignores any other.")
    if max_rows is not None and len(table) > max_rows:
        raise RequestRefused(
            f"The request has {len(table):,} rows, more than the {max_rows:,} this model "
            f"answers at once (register.max_rows): send at most {max_rows:,} images per "
            "request.")


def request_pixels(prep: dict[str, Any]) -> int | None:
    """The pixel budget of one call (``register.max_request_pixels``; null: none); a
    version registered before the setting existed gets its default."""
    from model_lifecycle.serving.config import MAX_REQUEST_PIXELS  # noqa: PLC0415

    return prep.get("max_request_pixels", MAX_REQUEST_PIXELS)


def _check_pixels(images: list[Any], limit: int | None) -> None:
    """Refuse a request whose images hold more than ``limit`` pixels together (from their
    headers, before any is decoded)."""
    from model_lifecycle.serving.images import source_pixels  # noqa: PLC0415

    if limit is None:
        return
    total = sum(source_pixels(image) for image in images)
    if total > limit:
        raise RequestRefused(
            f"The request's images hold {total:,} pixels together, more than the {limit:,} "
            "this model decodes for one request (register.max_request_pixels): send fewer "
            "or smaller images per request.")


def _images(table: pd.DataFrame) -> list[Any]:
    """The image of each row: its ``image`` (file bytes, or their base64), else its
    ``pixels``; a row that gives both is an error of its own."""
    from model_lifecycle.data.convert import ImageDecodeError  # noqa: PLC0415

    def cell(row: pd.Series, column: str) -> Any:
        value = row.get(column)
        return None if value is None or (np.isscalar(value) and pd.isna(value)) else value

    images: list[Any] = []
    for _, row in table.iterrows():
        image, pixels = cell(row, "image"), cell(row, "pixels")
        if image is not None and pixels is not None:
            images.append(ImageDecodeError("both an 'image' and a 'pixels' value: give one "
                                           "per row"))
        elif isinstance(pixels, str | bytes):
            images.append(ImageDecodeError(
                "text in the 'pixels' column: give pixels as nested lists of 0-255 values "
                "(H×W or H×W×C), or an image file's base64 in the 'image' column"))
        elif isinstance(image, int | float | np.number):
            images.append(ImageDecodeError(
                f"a number ({image}) in the 'image' column: give the base64 of an image "
                "file's bytes, or pixels (nested lists of 0-255 values) in 'pixels'"))
        else:
            images.append(image if image is not None else pixels)
    return images
