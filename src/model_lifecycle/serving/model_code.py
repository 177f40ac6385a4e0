"""The registered model's code: MLflow runs this file when it loads a version ("models
from code", https://mlflow.org/docs/latest/ml/model/models-from-code/), so a version holds
readable source instead of a pickled object, and loads where MLflow refuses to unpickle
(``MLFLOW_ALLOW_PICKLE_DESERIALIZATION=false``). The class itself is
:class:`~model_lifecycle.serving.pyfunc.ImageClassifier`, from the package copy each
version carries (its ``code_paths``)."""

import mlflow

from model_lifecycle.serving.pyfunc import ImageClassifier

mlflow.models.set_model(ImageClassifier())
