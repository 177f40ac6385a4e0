"""Models by name: ``build_model("resnet18_small", num_classes=10, in_channels=3)``.

Every model is a :class:`Classifier`: an encoder (image → feature vector) and a
linear head, so any step can swap the head or freeze the encoder.
"""

from model_lifecycle.models.classifier import Classifier
from model_lifecycle.models.registry import available, build_model

__all__ = ["Classifier", "available", "build_model"]
