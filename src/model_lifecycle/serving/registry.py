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
from mlflow.exceptions import MlflowException
from PIL import Image
from torch import nn

import model_lifecycle
from model_lifecycle.io.onnx_model import OnnxModelDataset
from model_lifecycle.io.torch_model import TorchModelDataset
from model_lifecycle.serving.champion import choose_champion
from model_lifecycle.serving.config import RegisterParams
from model_lifecycle.serving.pyfunc import SIGNATURE

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
                   "onnx_latency_b32_p50_ms", "onnx_size_bytes", "model_id", "sparsity")
# The file MLflow runs to build the model when it loads a version (models from code: no
# pickled object in the version).
MODEL_CODE = Path(__file__).with_name("model_code.py")
# What the registered model imports when it is served (pinned to what trained it).
# (torch-pruning: models.structure imports it; a test loads a version with only these.)
REQUIREMENTS = ("mlflow", "torch", "torchvision", "numpy", "pandas", "pillow", "kedro",
                "fsspec", "pydantic", "onnx", "onnxruntime", "torch-pruning")


def register_variants(models: dict[str, nn.Module], report: pd.DataFrame,
                      preprocessing: dict[str, Any], example_image: np.ndarray,
                      config: RegisterParams, *, baseline: str,
                      evaluated_on: str | None = None) -> dict[str, Any]:
    """Log each model as a pyfunc model version of ``config.model_name``, tag it with its
    report row, and point the ``baseline`` and ``champion`` aliases.

    ``preprocessing``: ``class_names``, ``channels``, ``size_hw``, ``resize``,
    ``max_pixels`` (per image), ``max_rows`` (per call, i.e. per HTTP request);
    ``example_image``: one uint8 C×H×W image, the input example (as a PNG);
    ``baseline``: the variant the others are compared with; ``evaluated_on``: what
    identifies the test images the report measured (tagged on each version).

    The aliases move only to models that answer like the current champion does (the
    same class names, channels and image size; ``register.replace_inputs`` lets others
    take them), and the champion alias only to one not more than
    ``register.max_accuracy_drop`` below the current champion when both were measured
    on the same test images: such a run registers its versions, leaves the aliases where
    they are and says why (a warning, and ``decision.kept`` in the summary).
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
    current = _champion(client, config.model_name)
    other_inputs = None if current is None or config.replace_inputs else \
        _other_inputs(config.model_name, current, preprocessing)
    example = pd.DataFrame({"image": [_png(example_image)]})
    versions: dict[str, str] = {}
    try:
        with tempfile.TemporaryDirectory() as tmp:
            prep_file = Path(tmp, "preprocessing.json")
            prep_file.write_text(json.dumps(preprocessing, indent=2))
            for row in rows:
                variant = row["variant"]
                artifacts = _model_files(models[variant], Path(tmp, variant), example_image,
                                         preprocessing)
                info = mlflow.pyfunc.log_model(
                    name=variant, python_model=str(MODEL_CODE),
                    artifacts={**artifacts, "preprocessing": str(prep_file)},
                    code_paths=[str(Path(model_lifecycle.__file__).parent)],
                    signature=SIGNATURE, input_example=example,
                    pip_requirements=[f"{name}=={metadata.version(name)}"
                                      for name in REQUIREMENTS])
                # the version and all its tags in one request (one per tag is some thirty
                # round trips per version to a shared tracking server)
                tags = {"variant": variant,
                        **({"evaluated_on": evaluated_on} if evaluated_on else {}),
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
    except BaseException:  # Ctrl-C, a registry error: none of this run's versions, not some
        _withdraw(client, config.model_name, versions)
        raise
    client.update_registered_model(config.model_name, description=(
        "Image classifier of the model-lifecycle project. Each version is one variant "
        "(tag `variant`) measured on the same test split. Alias `baseline`: the "
        f"{baseline} model; alias `champion`: {decision['rule']}. Input: a table with an `image` "
        "(encoded file bytes) or `pixels` (uint8 H×W×C) per row"
        + (f", at most {preprocessing['max_rows']:,} rows per request."
           if "max_rows" in preprocessing else ".")))
    champion = versions[decision["champion"]]
    kept = other_inputs or _better_kept(current, evaluated_on, decision, rows,
                                        config.max_accuracy_drop)
    if not other_inputs:  # the baseline names the champion's reference
        client.set_registered_model_alias(config.model_name, "baseline", versions[baseline])
    if kept:
        decision["kept"] = kept
        log.warning("champion stays %s version %s: %s", config.model_name,
                    current.version, kept)
        champion = str(current.version)
    else:
        client.set_registered_model_alias(config.model_name, "champion", champion)
        for key, value in decision.items():
            if key == "excluded":  # each version says what excluded it
                continue
            text = ", ".join(value) if isinstance(value, list) else str(value)
            client.set_model_version_tag(config.model_name, champion, f"champion.{key}",
                                         text)
    log.info("registered %s versions %s; champion: %s (version %s)", config.model_name,
             versions, "kept" if kept else decision["champion"], champion)
    aliases = {alias: _version_at(client, config.model_name, alias)
               for alias in ("baseline", "champion")}
    return {"model_name": config.model_name, "versions": versions, "aliases": aliases,
            "decision": decision}


def _withdraw(client: mlflow.MlflowClient, name: str, versions: dict[str, str]) -> None:
    """Delete the versions a registration that did not finish created (earlier runs'
    versions and the aliases are untouched: they move only at the end)."""
    for version in versions.values():
        try:
            client.delete_model_version(name, version)
        except MlflowException as exc:
            log.warning("could not delete version %s of %s left by the interrupted "
                        "registration: %s", version, name, exc.message)
    if versions:
        log.warning("registration of %s did not finish: deleted the versions it had "
                    "created (%s); the earlier versions and the aliases are as they were",
                    name, ", ".join(versions.values()))


def _version_at(client: mlflow.MlflowClient, name: str, alias: str) -> str | None:
    try:
        return str(client.get_model_version_by_alias(name, alias).version)
    except MlflowException:
        return None


def _champion(client: mlflow.MlflowClient, name: str) -> Any | None:
    """The version holding ``name``'s champion alias, with its ``preprocessing``; None
    when there is none yet."""
    try:
        version = client.get_model_version_by_alias(name, "champion")
    except MlflowException:  # no such model, or no such alias
        return None
    source = client.get_model_version_download_uri(name, version.version)
    with tempfile.TemporaryDirectory() as folder:
        try:
            path = mlflow.artifacts.download_artifacts(
                artifact_uri=f"{source.rstrip('/')}/artifacts/preprocessing.json",
                dst_path=folder)
            version.preprocessing = json.loads(Path(path).read_text())
        except (MlflowException, OSError, ValueError):  # a version made by other means
            version.preprocessing = None
    return version


def _inputs(preprocessing: dict[str, Any]) -> str:
    names = [str(n) for n in preprocessing["class_names"]]
    shown = ", ".join(names[:6]) + (", …" if len(names) > 6 else "")
    height, width = preprocessing["size_hw"]
    return (f"{len(names)} classes ({shown}) of {preprocessing['channels']}×{height}×{width} "
            "images")


def _other_inputs(name: str, current: Any, preprocessing: dict[str, Any]) -> str | None:
    """Why this run's models may not take the aliases (None: they may): a champion that
    starts answering other classes (or wants other images) breaks every client of
    ``models:/<name>@champion``."""
    def answers(p: dict[str, Any]) -> tuple:
        return [str(n) for n in p["class_names"]], int(p["channels"]), list(p["size_hw"])

    if current.preprocessing is None or answers(current.preprocessing) == answers(preprocessing):
        return None
    return (f"it answers {_inputs(current.preprocessing)} and this run's models answer "
            f"{_inputs(preprocessing)}; to serve them, register them under their own name "
            "(`kedro run --pipelines=register --params register.model_name=<name>`) or let "
            f"them take over '{name}' (`--params register.replace_inputs=true`)")


def _better_kept(current: Any | None, evaluated_on: str | None, decision: dict[str, Any],
                 rows: list[dict[str, Any]], max_drop: float) -> str | None:
    """Why the current champion keeps the alias (None: it does not): measured on the
    same test images, it is more than ``max_drop`` more accurate than this run's pick."""
    if (current is None or not evaluated_on or "accuracy" not in current.tags
            or current.tags.get("evaluated_on") != evaluated_on):
        return None
    theirs = float(current.tags["accuracy"])
    ours = next(row["accuracy"] for row in rows if row["variant"] == decision["champion"])
    if ours >= theirs - max_drop:
        return None
    return (f"its accuracy {theirs:.4f} on the same test images is more than "
            f"{max_drop:g} above this run's pick, {decision['champion']} at {ours:.4f}")


def _model_files(model: nn.Module, folder: Path, example_image: np.ndarray,
                 preprocessing: dict[str, Any]) -> dict[str, str]:
    """The version's model files: ``model`` (``model.pt``, or ``model.onnx`` for a model
    that is an ONNX file) and, for a float PyTorch model, ``onnx`` — its ONNX export, the
    one file a phone or a board needs (a PyTorch INT8 model's ONNX counterpart is the
    ``onnx_int8`` variant). Each ``.onnx`` file carries the class names and the image
    conversion in its metadata."""
    from model_lifecycle.compression.onnx import export_onnx, with_preprocessing  # noqa: PLC0415

    if isinstance(getattr(model, "onnx_bytes", None), bytes):
        path = folder / "model.onnx"
        OnnxModelDataset(filepath=str(path)).save(model)
        path.write_bytes(with_preprocessing(path.read_bytes(), preprocessing))
        return {"model": str(path)}
    path = folder / "model.pt"
    TorchModelDataset(filepath=str(path)).save(model)
    files = {"model": str(path)}
    if not getattr(model, "quantization", None):
        import torch  # noqa: PLC0415

        example = torch.from_numpy(example_image[None]).float() / 255
        onnx_file = folder / "model.onnx"
        onnx_file.write_bytes(with_preprocessing(export_onnx(model, example), preprocessing))
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
