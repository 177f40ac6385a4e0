"""The aliases move only to models their clients can use: the same classes and images as
the current champion, and not clearly worse on the same test images."""

from __future__ import annotations

import json
import os
from pathlib import Path

import mlflow
import numpy as np
import onnx
import pandas as pd
import pytest

from model_lifecycle.models import build_model
from model_lifecycle.serving.check import missing
from model_lifecycle.serving.config import RegisterParams
from model_lifecycle.serving.registry import register_variants

pytestmark = pytest.mark.filterwarnings("ignore::UserWarning")
NAME = "registry-test"


def _register(classes: list[str], accuracy: float, evaluated_on: str, **settings):
    model = build_model("small_cnn", len(classes), 1, input_size=(8, 8), width=4).eval()
    report = pd.DataFrame([{
        "variant": "finetuned", "method": "none", "accuracy": accuracy, "f1_macro": accuracy,
        "ece": 0.1, "size_bytes": 1000, "latency_b1_p50_ms": 1.0, "latency_b32_p50_ms": 2.0,
        "params": 10, "macs": 100}])
    preprocessing = {"class_names": classes, "channels": 1, "size_hw": [8, 8],
                     "resize": "center_crop", "max_pixels": 10_000, "max_rows": 10}
    return register_variants(
        {"finetuned": model}, report, preprocessing, np.zeros((1, 8, 8), np.uint8),
        RegisterParams(model_name=NAME, max_robust_drop=None, **settings),
        baseline="finetuned", evaluated_on=evaluated_on)


def test_the_champion_moves_only_to_a_model_its_clients_can_use(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    mlflow.set_tracking_uri(uri)
    mlflow.set_registry_uri(uri)
    mlflow.set_experiment("registry-test")  # not an experiment id another test left set
    client = mlflow.MlflowClient()

    def champion() -> str:
        return str(client.get_model_version_by_alias(NAME, "champion").version)

    first = _register(["a", "b", "c"], 0.9, "test-1")
    assert first["aliases"]["champion"] == champion() == "1"
    # the ONNX file a device downloads says its classes and input in its metadata
    folder = Path(mlflow.artifacts.download_artifacts(f"models:/{NAME}/1",
                                                      dst_path=str(tmp_path / "v1")))
    exported = onnx.load(folder / "artifacts" / "model.onnx")
    described = json.loads({p.key: p.value for p in exported.metadata_props}[
        "model_lifecycle.preprocessing"])
    assert described == {"class_names": ["a", "b", "c"], "channels": 1, "size_hw": [8, 8],
                         "resize": "center_crop"}
    assert "float32 B×1×8×8, pixels / 255" in exported.doc_string
    # a short run measured on the same test images: registered, but the champion stays
    worse = _register(["a", "b", "c"], 0.5, "test-1")
    assert champion() == worse["aliases"]["champion"] == "1"
    assert "0.9000 on the same test images" in worse["decision"]["kept"]
    assert str(client.get_model_version_by_alias(NAME, "baseline").version) == "2"
    # within max_accuracy_drop of it: the new run's pick takes over
    assert _register(["a", "b", "c"], 0.895, "test-1")["aliases"]["champion"] == "3"
    # other test images: the accuracies do not compare, the new run's pick takes over
    assert _register(["a", "b", "c"], 0.5, "test-2")["aliases"]["champion"] == "4"
    # other classes: registered, but neither alias moves to a model its clients cannot use
    other = _register(["x", "y"], 0.99, "test-3")
    assert len(client.search_model_versions(f"name='{NAME}'")) == 5
    assert other["aliases"] == {"baseline": "4", "champion": "4"} and champion() == "4"
    assert other["decision"]["kept"].startswith(
        "it answers 3 classes (a, b, c) of 1×8×8 images and this run's models answer 2 "
        "classes (x, y) of 1×8×8 images; to serve them, register them under their own name")
    replaced = _register(["x", "y"], 0.99, "test-3", replace_inputs=True)
    assert replaced["aliases"] == {"baseline": "6", "champion": "6"} and champion() == "6"
    # what `make serve` checks before it starts MLflow's server
    assert missing(NAME, "champion") is None and missing(NAME, "champion", "3") is None
    assert missing(NAME, "staging") == (
        f"The registry at {uri} has no version holding the alias 'staging' of the model "
        f"'{NAME}' (it has versions 1, 2, 3, 4, 5, 6): run `make run` (or `kedro run "
        "--pipelines=register`) first, or choose another with MODEL=, ALIAS= or "
        "MODEL_VERSION=.")
    assert "has no version 9 of the model" in missing(NAME, "champion", "9")
    assert "(it has no version)" in missing("flowers", "champion")
    assert missing(NAME, "champion", "latest") is None  # MLflow resolves it itself
    mlflow.set_registry_uri(f"sqlite:///{tmp_path / 'none' / 'mlflow.db'}")
    assert missing(NAME, "champion").startswith(
        f"There is no MLflow store at {tmp_path / 'none' / 'mlflow.db'} yet: run `make run`")
    assert not (tmp_path / "none").exists()
    mlflow.set_registry_uri(uri)


def test_a_registered_version_is_code_not_a_pickle(tmp_path, monkeypatch, capfd):
    """A version holds the model's source (MLflow's models from code) and loads where
    MLflow refuses to unpickle a model; registering it logs no pickle warning and no
    progress bars."""
    monkeypatch.chdir(tmp_path)
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    mlflow.set_tracking_uri(uri)
    mlflow.set_registry_uri(uri)
    mlflow.set_experiment("registry-code-test")
    capfd.readouterr()
    _register(["a", "b"], 0.9, "test-1")
    said = capfd.readouterr().err
    assert "CloudPickle" not in said and "Downloading artifacts" not in said
    folder = Path(mlflow.artifacts.download_artifacts(f"models:/{NAME}/1",
                                                      dst_path=str(tmp_path / "v1")))
    assert not list(folder.rglob("*.pkl"))
    pyfunc = mlflow.models.Model.load(str(folder)).flavors["python_function"]
    assert pyfunc["model_code_path"].endswith("model_code.py")
    monkeypatch.setenv("MLFLOW_ALLOW_PICKLE_DESERIALIZATION", "false")
    served = mlflow.pyfunc.load_model(f"models:/{NAME}/1")
    answer = served.predict(pd.DataFrame({"pixels": [np.zeros((8, 8), np.uint8).tolist()]}))
    assert list(answer.columns[:3]) == ["class", "confidence", "probabilities"]
    assert answer.loc[0, "class"] in {"a", "b"} and pd.isna(answer.loc[0, "error"])


def test_make_serves_check_says_at_once_that_a_tracking_server_is_down(capsys):
    """`make serve` against a team server that is down (MLFLOW_TRACKING_URI): one
    sentence within seconds, not minutes of MLflow's retries."""
    import socket  # noqa: PLC0415
    import time  # noqa: PLC0415

    from model_lifecycle.serving.check import main  # noqa: PLC0415

    with socket.socket() as sock:  # a port where nothing listens
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    before = mlflow.get_tracking_uri(), mlflow.get_registry_uri()
    kept = {key: os.environ.get(key) for key in ("MLFLOW_HTTP_REQUEST_MAX_RETRIES",
                                                 "MLFLOW_HTTP_REQUEST_TIMEOUT")}
    for key in kept:
        os.environ.pop(key, None)  # MLflow's defaults: retries for minutes
    mlflow.set_tracking_uri(f"http://127.0.0.1:{port}")  # as make serve's environment sets
    mlflow.set_registry_uri(f"http://127.0.0.1:{port}")
    started = time.monotonic()
    try:
        assert main([NAME, "champion", ""]) == 1
    finally:
        mlflow.set_tracking_uri(before[0])
        mlflow.set_registry_uri(before[1])
        for key, value in kept.items():  # main sets them for its own process
            os.environ.pop(key, None)
            if value is not None:
                os.environ[key] = value
    assert time.monotonic() - started < 30
    assert capsys.readouterr().err == (
        f"Error: The registry at http://127.0.0.1:{port} does not answer (Connection "
        "refused): start it (make server), or set SERVE_URI to the registry that holds "
        "the model.\n")


def test_an_interrupted_registration_leaves_none_of_its_versions(tmp_path, monkeypatch):
    """Ctrl-C (or a registry error) between two variants: the versions this run had
    created are deleted, the earlier ones and the aliases stay as they were."""
    monkeypatch.chdir(tmp_path)
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    mlflow.set_tracking_uri(uri)
    mlflow.set_registry_uri(uri)
    mlflow.set_experiment("registry-interrupted")
    _register(["a", "b"], 0.9, "test-1")
    model = build_model("small_cnn", 2, 1, input_size=(8, 8), width=4).eval()
    row = {"method": "none", "accuracy": 0.9, "f1_macro": 0.9, "ece": 0.1,
           "size_bytes": 1000, "latency_b1_p50_ms": 1.0, "latency_b32_p50_ms": 2.0,
           "params": 10, "macs": 100}
    report = pd.DataFrame([{"variant": "finetuned", **row}, {"variant": "pruned", **row}])
    real = mlflow.register_model
    calls = []

    def interrupted(*args, **kwargs):
        calls.append(1)
        if len(calls) == 2:
            raise KeyboardInterrupt
        return real(*args, **kwargs)

    monkeypatch.setattr(mlflow, "register_model", interrupted)
    with pytest.raises(KeyboardInterrupt):
        register_variants({"finetuned": model, "pruned": model}, report,
                          {"class_names": ["a", "b"], "channels": 1, "size_hw": [8, 8],
                           "resize": "center_crop", "max_pixels": 10_000, "max_rows": 10},
                          np.zeros((1, 8, 8), np.uint8),
                          RegisterParams(model_name=NAME, max_robust_drop=None),
                          baseline="finetuned", evaluated_on="test-2")
    client = mlflow.MlflowClient()
    assert [str(v.version) for v in client.search_model_versions(f"name='{NAME}'")] == ["1"]
    assert str(client.get_model_version_by_alias(NAME, "champion").version) == "1"
