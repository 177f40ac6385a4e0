"""model-lifecycle: the whole life of an image base model as a Kedro project."""

__version__ = "0.1.0"
