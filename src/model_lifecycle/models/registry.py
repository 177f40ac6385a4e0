"""A small registry of architectures, each adapted to small images (≥ 8 px, 1 or 3 channels)."""

from __future__ import annotations

import inspect
from collections.abc import Callable
from typing import Any

from model_lifecycle.errors import ArchitectureArgumentsError, LifecycleError
from model_lifecycle.models.classifier import Classifier, Encoder

_ENCODERS: dict[str, Callable[..., Encoder]] = {}


def register(name: str) -> Callable[[Callable[..., Encoder]], Callable[..., Encoder]]:
    """Decorator: make an encoder factory ``f(in_channels, **kwargs)`` buildable by name."""

    def add(factory: Callable[..., Encoder]) -> Callable[..., Encoder]:
        _ENCODERS[name] = factory
        return factory

    return add


def available() -> list[str]:
    _load_architectures()
    return sorted(_ENCODERS)


def build_model(arch: str, num_classes: int, in_channels: int = 3, *,
                input_size: tuple[int, int] | None = None, **kwargs: Any) -> Classifier:
    """Build ``arch`` with a fresh linear head of ``num_classes`` outputs.

    ``input_size`` (height, width of the images) becomes the ``image_size`` argument of
    architectures whose size is fixed at build time (``vit``: its position embeddings)
    unless ``kwargs`` set it; the others ignore it.
    """
    _load_architectures()
    if arch not in _ENCODERS:
        raise LifecycleError(f"Unknown architecture '{arch}': choose one of "
                             f"{', '.join(sorted(_ENCODERS))}.")
    if input_size is not None and "image_size" not in kwargs \
            and "image_size" in inspect.signature(_ENCODERS[arch]).parameters:
        height, width = input_size
        kwargs["image_size"] = int(height) if height == width else [int(height), int(width)]
    try:
        encoder = _ENCODERS[arch](in_channels, **kwargs)
    except LifecycleError:  # the architecture's own sentence (vit's patch size)
        raise
    except (TypeError, ValueError, RuntimeError) as exc:  # a misspelt name, a width of 0
        raise ArchitectureArgumentsError(arch, str(exc).splitlines()[0]) from None
    spec = {"arch": arch, "num_classes": num_classes, "in_channels": in_channels, **kwargs}
    return Classifier(encoder, num_classes, spec)


def shape_only(arch: str, in_channels: int, **kwargs: Any) -> Classifier:
    """``arch`` built on the meta device (shapes, no weights, no memory): for checks
    before anything runs."""
    import torch  # noqa: PLC0415 - the registry's callers have it loaded already

    with torch.device("meta"):
        return build_model(arch, 2, in_channels, **kwargs)


def fixes_image_size(arch: str) -> bool:
    """Whether ``arch`` is built for one image size (``vit``: its position embeddings)."""
    _load_architectures()
    return arch in _ENCODERS and "image_size" in inspect.signature(_ENCODERS[arch]).parameters


def build_from_spec(spec: dict[str, Any]) -> Classifier:
    """Rebuild the architecture recorded in ``Classifier.spec`` (weights not included)."""
    spec = dict(spec)
    return build_model(spec.pop("arch"), spec.pop("num_classes"), spec.pop("in_channels"),
                       **spec)


def _load_architectures() -> None:
    # Importing the modules runs their @register decorators.
    from model_lifecycle.models import cnn, mobilenet, resnet, vit  # noqa: F401, PLC0415
