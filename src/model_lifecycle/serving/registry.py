"""Every variant into the MLflow model registry, with tags and the aliases that name the
baseline and the champion. The only module that talks to the registry API."""

from __future__ import annotations

import io
import json
import logging
import math
import tempfile
from importlib import metadata
from pathlib import Path
from typing import Any

import mlflow
import numpy as np
import pandas as pd
from PIL import Image
from torch import nn

import model_lifecycle
from model_lifecycle.io.onnx_model import OnnxModelDataset
from model_lifecycle.io.torch_model import TorchModelDataset
from model_lifecycle.serving.champion import choose_champion
from model_lifecycle.serving.config import RegisterParams
from model_lifecycle.serving.pyfunc import SIGNATURE, ImageClassifier

log = logging.getLogger(__name__)

# The report columns copied onto each registered version as tags.
TAGGED = ("method", "accuracy", "f1_macro", "ece", "size_bytes", "latency_b1_p50_ms",
          "latency_b32_p50_ms", "params", "macs")
# The trust and ONNX figures copied too, when the report has them (NaN and absent are
# skipped).
OPTIONAL_TAGGED = ("corruption_accuracy", "corruption_robust_drop", "fgsm_accuracy",
                   "pgd_accuracy", "attack", "explained_with", "deletion_auc",
                   "insertion_auc", "attribution_drift", "onnx_top1_agreement",
                   "onnx_max_probability_difference", "onnx_latency_b1_p50_ms",
                   "onnx_latency_b32_p50_ms", "onnx_size_bytes")
# What the registered model imports when it is served (pinned to what trained it).
# (torch-pruning: models.structure imports it; a test loads a version with only these.)
REQUIREMENTS = ("mlflow", "torch", "torchvision", "numpy", "pandas", "pillow", "kedro",
                "fsspec", "pydantic", "onnx", "onnxruntime", "torch-pruning")


def register_variants(models: dict[str, nn.Module], report: pd.DataFrame,
                      preprocessing: dict[str, Any], example_image: np.ndarray,
                      config: RegisterParams, *, baseline: str) -> dict[str, Any]:
    """Log each model as a pyfunc model version of ``config.model_name``, tag it with its
    report row, and point the ``baseline`` and ``champion`` aliases.

    ``preprocessing``: ``class_names``, ``channels``, ``size_hw``, ``resize``,
    ``max_pixels`` (per image), ``max_rows`` (per call, i.e. per HTTP request);
    ``example_image``: one uint8 C×H×W image, the input example (as a PNG);
    ``baseline``: the variant the others are compared with.
    Returns the registry summary: versions, aliases and the champion decision.
    """
    # the report may hold rows that are not registered (the from-scratch baseline)
    rows = [row for row in report.to_dict(orient="records") if row["variant"] in models]
    decision = choose_champion(rows, prefer=config.prefer,
                               max_accuracy_drop=config.max_accuracy_drop,
                               max_robust_drop=config.max_robust_drop,
                               max_attribution_drift=config.max_attribution_drift,
                               baseline=baseline)
    client = mlflow.MlflowClient()
    example = pd.DataFrame({"image": [_png(example_image)]})
    versions = {}
    with tempfile.TemporaryDirectory() as tmp:
        prep_file = Path(tmp, "preprocessing.json")
        prep_file.write_text(json.dumps(preprocessing, indent=2))
        for row in rows:
            variant = row["variant"]
            artifacts = _model_files(models[variant], Path(tmp, variant), example_image)
            info = mlflow.pyfunc.log_model(
                name=variant, python_model=ImageClassifier(),
                artifacts={**artifacts, "preprocessing": str(prep_file)},
                code_paths=[str(Path(model_lifecycle.__file__).parent)],
                signature=SIGNATURE, input_example=example,
                pip_requirements=[f"{name}=={metadata.version(name)}"
                                  for name in REQUIREMENTS])
            # the version and all its tags in one request (one per tag is some thirty
            # round trips per version to a shared tracking server)
            tags = {"variant": variant,
                    **{key: _text(row[key]) for key in TAGGED},
                    **{key: _text(row[key]) for key in OPTIONAL_TAGGED
                       if _present(row.get(key))},
                    "champion.excluded_by": decision["excluded"].get(variant, "none")}
            version = mlflow.register_model(info.model_uri, config.model_name,
                                            tags=tags).version
            versions[variant] = str(version)
            client.update_model_version(config.model_name, version, description=(
                f"{variant} ({row['method']}): test accuracy {row['accuracy']:.2%}, "
                f"{row['size_bytes'] / 1024:.0f} KiB"))
    client.update_registered_model(config.model_name, description=(
        "Image classifier of the model-lifecycle project. Each version is one variant "
        "(tag `variant`) measured on the same test split. Alias `baseline`: the "
        f"{baseline} model; alias `champion`: {decision['rule']}. Input: a table with an `image` "
        "(encoded file bytes) or `pixels` (uint8 H×W×C) per row"
        + (f", at most {preprocessing['max_rows']:,} rows per request."
           if "max_rows" in preprocessing else ".")))
    client.set_registered_model_alias(config.model_name, "baseline", versions[baseline])
    champion = versions[decision["champion"]]
    client.set_registered_model_alias(config.model_name, "champion", champion)
    for key, value in decision.items():
        if key == "excluded":  # each version says what excluded it (champion.excluded_by)
            continue
        text = ", ".join(value) if isinstance(value, list) else str(value)
        client.set_model_version_tag(config.model_name, champion, f"champion.{key}", text)
    log.info("registered %s versions %s; champion: %s (version %s)", config.model_name,
             versions, decision["champion"], champion)
    return {"model_name": config.model_name, "versions": versions,
            "aliases": {"baseline": versions[baseline], "champion": champion},
            "decision": decision}


def _model_files(model: nn.Module, folder: Path, example_image: np.ndarray
                 ) -> dict[str, str]:
    """The version's model files: ``model`` (``model.pt``, or ``model.onnx`` for a model
    that is an ONNX file) and, for a float PyTorch model, ``onnx`` — its ONNX export, the
    one file a phone or a board needs (a PyTorch INT8 model's ONNX counterpart is the
    ``onnx_int8`` variant)."""
    if isinstance(getattr(model, "onnx_bytes", None), bytes):
        path = folder / "model.onnx"
        OnnxModelDataset(filepath=str(path)).save(model)
        return {"model": str(path)}
    path = folder / "model.pt"
    TorchModelDataset(filepath=str(path)).save(model)
    files = {"model": str(path)}
    if not getattr(model, "quantization", None):
        import torch  # noqa: PLC0415

        from model_lifecycle.compression.onnx import export_onnx  # noqa: PLC0415

        example = torch.from_numpy(example_image[None]).float() / 255
        onnx_file = folder / "model.onnx"
        onnx_file.write_bytes(export_onnx(model, example))
        files["onnx"] = str(onnx_file)
    return files


def _present(value: Any) -> bool:
    return value is not None and not (isinstance(value, float) and math.isnan(value))


def _text(value: Any) -> str:
    """A tag value: numbers to 6 significant digits (0.858333, 593265, 0.357069)."""
    return f"{value:.6g}" if isinstance(value, float | int) else str(value)


def _png(image: np.ndarray) -> bytes:
    """A uint8 C×H×W image as PNG bytes."""
    pixels = image[0] if image.shape[0] == 1 else image.transpose(1, 2, 0)
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, format="PNG")
    return buffer.getvalue()
