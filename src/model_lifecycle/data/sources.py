"""Pick the source named by ``ingest.source`` and load it as an :class:`ImageSet`."""

from __future__ import annotations

import logging
from pathlib import Path

from model_lifecycle.data.cifar10 import load_cifar10
from model_lifecycle.data.config import IngestParams
from model_lifecycle.data.digits import load_digits
from model_lifecycle.data.image_folder import load_image_folder
from model_lifecycle.data.imageset import ImageSet

log = logging.getLogger(__name__)


def load_source(params: IngestParams) -> ImageSet:
    """Load every image of the configured source at ``image_size`` and ``channels``."""
    source = resolve_source(params)
    if source == "digits":
        return load_digits(params.size_hw, channels=params.channels or 1,
                           resize=params.resize)
    if source == "cifar10":
        return load_cifar10(params.path, params.size_hw, channels=params.channels or 3,
                            resize=params.resize)
    return load_image_folder(
        params.path,
        params.size_hw,
        channels=params.channels or 3,
        resize=params.resize,
        on_bad_image=params.on_bad_image,
        num_workers=params.num_workers,
        max_pixels=params.max_pixels,
    )


def resolve_source(params: IngestParams) -> str:
    """``ingest.source``, with ``auto`` resolved from ``ingest.path``: ``cifar10`` for a
    ``.tar.gz`` archive or a folder holding ``data_batch_1`` (directly or under
    ``cifar-10-batches-py/``), ``image_folder`` for any other folder."""
    if params.source != "auto":
        return params.source
    path = Path(params.path)
    archive = path.is_file() and path.name.endswith((".tar.gz", ".tgz"))
    batches = any((folder / "data_batch_1").exists()
                  for folder in (path, path / "cifar-10-batches-py"))
    source = "cifar10" if archive or batches else "image_folder"
    log.info("ingest.source auto: %s is read as %s", path, source)
    return source
