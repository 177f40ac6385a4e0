"""Nodes of the ``inference`` pipeline."""

from __future__ import annotations

import logging
from typing import Any

import pandas as pd

from model_lifecycle.params import parse_params
from model_lifecycle.serving.config import InferenceParams, RegisterParams
from model_lifecycle.serving.predict import files_to_predict, load_registered, predict_files

log = logging.getLogger(__name__)


def predict_folder(params: dict[str, Any], register: dict[str, Any]) -> pd.DataFrame:
    """Predict every file under ``inference.input_dir`` with the registered model that
    holds ``inference.alias``: one row per file (``file``, ``class``, ``confidence``,
    ``error``, ``model_version``). Unreadable files get their reason in ``error``."""
    config = parse_params(InferenceParams, params, "inference")
    name = parse_params(RegisterParams, register, "register").model_name
    files, left_out = files_to_predict(config.input_dir)
    if left_out:
        log.info("%d files under %s left out as never images, e.g. %s", len(left_out),
                 config.input_dir, left_out[0].name)
    model, version = load_registered(name, config.alias)
    predictions = predict_files(model, config.input_dir, files, batch_size=config.batch_size)
    predictions["model_version"] = version
    failed = predictions["error"].notna()
    if failed.any():
        log.warning("%d of %d files could not be read, e.g. %s: %s", failed.sum(),
                    len(predictions), predictions.loc[failed, "file"].iloc[0],
                    predictions.loc[failed, "error"].iloc[0])
    log.info("predicted %d images with %s@%s (version %s)", (~failed).sum(), name,
             config.alias, version)
    return predictions
