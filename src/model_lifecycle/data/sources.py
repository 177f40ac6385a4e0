"""Pick the source named by ``ingest.source`` and load it as an :class:`ImageSet`."""

from __future__ import annotations

from model_lifecycle.data.cifar10 import load_cifar10
from model_lifecycle.data.config import IngestParams
from model_lifecycle.data.digits import load_digits
from model_lifecycle.data.image_folder import load_image_folder
from model_lifecycle.data.imageset import ImageSet


def load_source(params: IngestParams) -> ImageSet:
    """Load every image of the configured source at ``image_size`` and ``channels``."""
    if params.source == "digits":
        return load_digits(params.size_hw, channels=params.channels or 1,
                           resize=params.resize)
    if params.source == "cifar10":
        return load_cifar10(params.path, params.size_hw, channels=params.channels or 3,
                            resize=params.resize)
    return load_image_folder(
        params.path,
        params.size_hw,
        channels=params.channels or 3,
        resize=params.resize,
        on_bad_image=params.on_bad_image,
        num_workers=params.num_workers,
    )
