"""Nodes of the ``register`` pipeline."""

from __future__ import annotations

import hashlib
from typing import Any

import numpy as np
import pandas as pd
from torch import nn

from model_lifecycle.data.config import IngestParams
from model_lifecycle.data.imageset import ImageSet
from model_lifecycle.params import parse_params
from model_lifecycle.serving.config import RegisterParams
from model_lifecycle.serving.registry import register_variants
from model_lifecycle.variants import baseline


def register_models(evaluation_report: pd.DataFrame, images: ImageSet,
                    splits: dict[str, np.ndarray], ingest: dict[str, Any],
                    params: dict[str, Any], **models: nn.Module) -> dict[str, Any]:
    """Register each evaluated variant (``models`` by variant name) with the
    preprocessing its training data had, so the registered model takes raw images; name
    the baseline and the champion."""
    config = parse_params(RegisterParams, params, "register")
    ingest_config = parse_params(IngestParams, ingest, "ingest",
                                 context={"reads_files": False})
    channels, height, width = images.image_shape
    preprocessing = {"class_names": list(images.class_names), "channels": channels,
                     "size_hw": [height, width], "resize": ingest_config.resize,
                     "max_pixels": ingest_config.max_pixels, "max_rows": config.max_rows,
                     "max_request_pixels": config.max_request_pixels}
    # the report's test images: the same fingerprint, the same accuracy scale
    test = np.ascontiguousarray(np.sort(np.asarray(splits["test"], dtype=np.int64)))
    evaluated_on = hashlib.sha256(images.fingerprint().encode() + test.tobytes()).hexdigest()
    return register_variants(models, evaluation_report, preprocessing, images.images[0],
                             config, baseline=baseline().name, evaluated_on=evaluated_on[:16])
