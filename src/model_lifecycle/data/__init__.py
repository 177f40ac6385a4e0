"""Image sources, conversion and stratified splits (no Kedro in here)."""

from model_lifecycle.data.imageset import ImageSet
from model_lifecycle.data.sources import load_source
from model_lifecycle.data.splits import SPLIT_NAMES, make_splits

__all__ = ["SPLIT_NAMES", "ImageSet", "load_source", "make_splits"]
