"""The whole default lifecycle on tiny data, run once: ingest → … → compress → evaluate →
register; then batch inference, the HTTP endpoint and the notebook against its results."""

from __future__ import annotations

import base64
import contextlib
import io
import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import mlflow
import nbclient
import nbformat
import numpy as np
import pandas as pd
import pytest
import torch
from PIL import Image

from model_lifecycle.errors import LifecycleError
from model_lifecycle.io import OnnxModelDataset, TableDataset, TorchModelDataset
from model_lifecycle.serving.champion import choose_champion
from tests.conftest import PROJECT_ROOT, bomb_png, project_runner
from tests.pipelines.test_ingest_augment_run import _runs, _versions
from tests.pipelines.test_pretrain_finetune_run import TINY

VARIANTS = ("finetuned", "pruned", "quantized", "onnx_int8", "distilled")
NAME = "model-lifecycle"


@pytest.fixture(scope="module", autouse=True)
def _inside_the_project(lifecycle) -> Iterator[None]:
    """These tests run more pipelines in the shared tiny lifecycle (conftest's
    ``lifecycle``): from inside its project."""
    with pytest.MonkeyPatch.context() as patch:
        patch.chdir(lifecycle.work)
        yield


@pytest.fixture
def registry(lifecycle) -> mlflow.MlflowClient:
    uri = f"sqlite:///{lifecycle.work / 'mlflow.db'}"
    mlflow.set_tracking_uri(uri)
    mlflow.set_registry_uri(uri)
    return mlflow.MlflowClient()


def _latest(work: Path, relative: str) -> Path:
    return _versions(work, relative)[-1]


def _report(work: Path) -> pd.DataFrame:
    path = _latest(work, "data/08_reporting/evaluation_report.csv")
    return TableDataset(filepath=str(path)).load()


def _test_images(work: Path, count: int) -> tuple[np.ndarray, np.ndarray]:
    images = np.load(_latest(work, "data/03_primary/images.npz"))
    test = np.load(_latest(work, "data/05_model_input/splits.npz"))["test"][:count]
    return images["images"][test], images["labels"][test]


def _encode(image: np.ndarray, fmt: str) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(image[0]).save(buffer, format=fmt, quality=95)
    return buffer.getvalue()


def test_training_and_compression_outputs(lifecycle):
    work = lifecycle.work
    [encoder_file] = _versions(work, "data/06_models/pretrained_encoder.pt")
    encoder = TorchModelDataset(filepath=str(encoder_file)).load()
    model = TorchModelDataset(filepath=str(_latest(work, "data/06_models/finetuned_model.pt"))
                              ).load()
    assert model.spec["arch"] == encoder.spec["arch"] == "small_cnn"
    x = torch.rand(2, 1, 8, 8)
    assert not torch.equal(model.features(x), encoder.features(x))  # fine-tuned further

    run = _runs(work).iloc[0]
    assert run["status"] == "FINISHED"
    assert run["params.pretrain.method"] == "simclr"
    client = mlflow.MlflowClient()
    losses = client.get_metric_history(run["run_id"], "pretrain.train_loss")
    assert [m.step for m in losses] == [0, 1]
    knn = client.get_metric_history(run["run_id"], "pretrain.knn_accuracy")
    assert [m.step for m in knn] == [0, 1, 2]  # each epoch, then the final encoder
    assert len(client.get_metric_history(run["run_id"], "finetune.val_accuracy")) == 4
    assert 0 <= run["metrics.pretrain.linear_probe_accuracy"] <= 1
    assert run["metrics.finetune.trainable_params"] == run["metrics.finetune.total_params"]
    assert (work / "data/06_models/checkpoints/pretrain.pt").exists()
    for name in ("pruned_model", "quantized_model", "distilled_model"):
        path = _latest(work, f"data/06_models/{name}.pt")
        assert TorchModelDataset(filepath=str(path)).load()(x).shape == (2, 10), name
    assert run["metrics.pruned.macs_reduction"] >= 2.0
    assert run["metrics.quantized.size_bytes"] < run["metrics.finetuned.size_bytes"]
    assert run["metrics.distilled.params"] < run["metrics.finetuned.params"] / 4


def test_evaluation_report_has_one_row_per_variant(lifecycle):
    work = lifecycle.work
    report = _report(work).set_index("variant")
    assert tuple(report.index) == VARIANTS
    for column in ("accuracy", "precision_macro", "recall_macro", "f1_macro",
                   "top3_accuracy", "ece"):
        assert report[column].between(0, 1).all(), column
    assert (report["top3_accuracy"] >= report["accuracy"]).all()
    assert (report["latency_b32_p95_ms"] >= report["latency_b32_p50_ms"]).all()
    assert (report["test_images"] == report["test_images"].iloc[0]).all()
    # measured the same way as compress measured them: the same test accuracy
    run = _runs(work).iloc[0]
    for variant in VARIANTS:
        assert report.loc[variant, "accuracy"] == pytest.approx(
            run[f"metrics.{variant}.test_accuracy"]), variant
        assert run[f"metrics.evaluate.{variant}.accuracy"] == pytest.approx(
            report.loc[variant, "accuracy"])
    # quantization keeps the float architecture's parameters and MACs
    assert report.loc["quantized", "params"] == report.loc["finetuned", "params"]
    assert report.loc["quantized", "size_bytes"] < report.loc["finetuned", "size_bytes"]
    assert report["pareto_size"].any() and report["pareto_latency"].any()
    details = json.loads(_latest(work, "data/08_reporting/evaluation_details.json").read_text())
    matrix = np.array(details["variants"]["finetuned"]["confusion_matrix"])
    assert matrix.shape == (10, 10) and matrix.sum() == report.loc["finetuned", "test_images"]
    for figure in ("confusion_matrices", "accuracy_tradeoffs", "reliability_diagram",
                   "corruption_robustness"):
        assert (work / f"data/08_reporting/{figure}.png").stat().st_size > 0
    client = mlflow.MlflowClient()
    artifacts = {a.path for a in client.list_artifacts(run["run_id"], "evaluate")}
    assert {"evaluate/accuracy_tradeoffs.png", "evaluate/corruption_robustness.png",
            "evaluate/corruption_report.csv"} <= artifacts


def test_the_report_and_the_run_hold_every_variants_trust_figures(lifecycle):
    work = lifecycle.work
    report = _report(work).set_index("variant")
    for column in ("corruption_clean_accuracy", "corruption_accuracy", "fgsm_accuracy",
                   "pgd_accuracy", "deletion_auc", "insertion_auc", "deletion_random_auc",
                   "insertion_random_auc", "attribution_top_overlap"):
        assert report[column].between(0, 1).all(), column
    # PGD is at least as strong as FGSM on the models it attacks white-box
    white = report[report.attack == "white-box"]
    assert (white.pgd_accuracy <= white.fgsm_accuracy + 0.02).all()
    for int8 in ("quantized", "onnx_int8"):  # no autograd: attacked and explained without
        assert report.loc[int8, "attack"] == "transfer from finetuned"
        assert report.loc[int8, "explained_with"] == "occlusion"
    # every float variant exported to ONNX and checked against itself; the ONNX Runtime
    # INT8 model checked against its float source; PyTorch INT8 has no ONNX export
    floats = ["finetuned", "pruned", "distilled"]
    assert (report.loc[floats, "onnx_top1_agreement"] == 1.0).all()
    assert (report.loc[floats, "onnx_max_probability_difference"] < 1e-4).all()
    assert report.loc["onnx_int8", "onnx_top1_agreement"] >= 0.8
    assert np.isnan(report.loc["quantized", "onnx_top1_agreement"])
    assert (report.loc[[*floats, "onnx_int8"], "onnx_latency_b1_p50_ms"] > 0).all()
    assert report.loc["finetuned", "explained_with"] == "integrated_gradients"
    assert report.loc["finetuned", "attribution_drift"] == pytest.approx(0, abs=1e-9)
    corrupted = TableDataset(filepath=str(_latest(
        work, "data/08_reporting/corruption_report.csv"))).load()
    # 12 corruptions × 3 severities + clean, per variant
    assert corrupted.groupby("variant").size().to_dict() == {v: 37 for v in VARIANTS}
    figures = sorted(p.name for p in (work / "data/08_reporting/explanations").iterdir())
    assert figures == sorted(f"{v}.png" for v in VARIANTS)
    run = _runs(work).iloc[0]
    client = mlflow.MlflowClient()
    explain = {a.path for a in client.list_artifacts(run["run_id"], "explain/explanations")}
    assert explain == {f"explain/explanations/{v}.png" for v in VARIANTS}
    assert run["metrics.evaluate.pruned.pgd_accuracy"] == pytest.approx(
        report.loc["pruned", "pgd_accuracy"])


def test_the_run_records_each_nodes_seconds(lifecycle):
    from model_lifecycle.pipeline_registry import register_pipelines  # noqa: PLC0415

    run = _runs(lifecycle.work).iloc[0]
    nodes = {node.name for node in register_pipelines()["__default__"].nodes}
    seconds = {key.removeprefix("metrics.seconds."): value for key, value in run.items()
               if key.startswith("metrics.seconds.") and not pd.isna(value)}
    assert set(seconds) == nodes
    assert all(value > 0 for value in seconds.values())
    wall = (run["end_time"] - run["start_time"]).total_seconds()
    assert sum(seconds.values()) <= wall + 1
    # logging five models takes seconds; reading a policy file, hundredths (tenths on a
    # busy machine: fine-tuning's half second is no safe margin)
    assert seconds["register_models"] > 2 * seconds["resolve_augmentation_policy"]
    # they describe the run: none is copied to the models the run logged
    models = mlflow.search_logged_models(experiment_ids=[run["experiment_id"]],
                                         output_format="list")
    assert models and not [m.key for model in models for m in model.metrics or []
                           if m.key.startswith("seconds.")]


def test_every_variant_is_registered_and_the_aliases_obey_the_rule(lifecycle, registry,
                                                                   tmp_path):
    report = _report(lifecycle.work)
    versions = {v.tags["variant"]: v for v in registry.search_model_versions(f"name='{NAME}'")}
    assert set(versions) == set(VARIANTS)
    for variant, version in versions.items():
        row = report.set_index("variant").loc[variant]
        assert float(version.tags["accuracy"]) == pytest.approx(row["accuracy"], rel=1e-5)
        assert version.tags["method"] == row["method"]
    # each torch version names the model the report measured, the one it was saved as
    model = TorchModelDataset(filepath=str(_latest(lifecycle.work,
                                                   "data/06_models/finetuned_model.pt"))).load()
    assert versions["finetuned"].tags["model_id"] == model.trained_on["model_id"]
    assert model.trained_on["model_id"].startswith("m-")
    aliases = registry.get_registered_model(NAME).aliases
    assert str(aliases["baseline"]) == str(versions["finetuned"].version)
    decision = choose_champion(report.to_dict(orient="records"), prefer="size",
                               max_accuracy_drop=0.01, max_robust_drop=0.02)
    expected = decision["champion"]
    assert str(aliases["champion"]) == str(versions[expected].version)
    # the rule, checked directly: within 1 point of the baseline's accuracy and 2 of its
    # corruption accuracy, and nothing eligible smaller
    champion = report.set_index("variant").loc[expected]
    baseline = report.set_index("variant").loc["finetuned"]
    assert champion["accuracy"] >= baseline["accuracy"] - 0.01
    eligible = report[(report["accuracy"] >= baseline["accuracy"] - 0.01)
                      & (report["corruption_accuracy"]
                         >= baseline["corruption_accuracy"] - 0.02)]
    assert champion["size_bytes"] == eligible["size_bytes"].min()
    for variant, version in versions.items():  # each says what, if anything, excluded it
        reason = version.tags["champion.excluded_by"]
        assert (reason == "none") == (variant in set(eligible["variant"])), variant
        row = report.set_index("variant").loc[variant]
        assert float(version.tags["corruption_accuracy"]) == pytest.approx(
            row["corruption_accuracy"], rel=1e-5)
        assert version.tags["attack"] == row["attack"]
        # one file for a device: the float variants' ONNX export, the ONNX INT8 model itself
        folder = mlflow.artifacts.download_artifacts(f"models:/{NAME}/{version.version}",
                                                     dst_path=str(tmp_path / variant))
        files = {f.name for f in (Path(folder) / "artifacts").iterdir()}
        expected = {"quantized": {"model.pt"}, "onnx_int8": {"model.onnx"}}.get(
            variant, {"model.pt", "model.onnx"})
        assert files == expected | {"preprocessing.json"}, variant
    tags = registry.get_model_version_by_alias(NAME, "champion").tags
    assert tags["champion.cost_column"] == "size_bytes"
    assert float(tags["champion.baseline_accuracy"]) == pytest.approx(baseline["accuracy"])


def test_the_registered_champion_takes_raw_images(lifecycle, registry):
    images, _ = _test_images(lifecycle.work, 6)
    served = mlflow.pyfunc.load_model(f"models:/{NAME}@champion")
    from_png = served.predict(pd.DataFrame({"image": [_encode(i, "PNG") for i in images]}))
    from_pixels = served.predict(pd.DataFrame({"pixels": list(images.transpose(0, 2, 3, 1))}))
    pd.testing.assert_frame_equal(from_png, from_pixels)
    # the same answers as the champion's own catalog file on the same pixels
    variant = registry.get_model_version_by_alias(NAME, "champion").tags["variant"]
    dataset, suffix = (OnnxModelDataset, "onnx") if variant == "onnx_int8" else \
        (TorchModelDataset, "pt")
    model = dataset(filepath=str(_latest(lifecycle.work,
                                         f"data/06_models/{variant}_model.{suffix}"))).load()
    with torch.inference_mode():
        expected = torch.softmax(model(torch.from_numpy(images).float() / 255), 1).numpy()
    assert list(from_png["confidence"]) == pytest.approx(list(expected.max(1)), abs=1e-6)
    assert list(from_png["class"]) == [str(c) for c in expected.argmax(1)]
    assert sum(from_png["probabilities"][0].values()) == pytest.approx(1.0, abs=1e-5)


# A fresh process with only the packages in ``sys.argv[2]`` (JSON) importable, as in an
# environment built from a version's requirements.txt, loads ``sys.argv[1]`` and answers
# one request. Packages imported only when present (orjson, psutil …) stay optional.
_ONLY_LISTED = """
import importlib.machinery, importlib.metadata, json, re, sys
allowed = set(json.loads(sys.argv[2]))
owners = importlib.metadata.packages_distributions()

class OnlyListed(importlib.machinery.PathFinder):  # finds nothing of other packages
    @classmethod
    def find_spec(cls, name, path=None, target=None):
        dists = {re.sub(r"[-_.]+", "-", d).lower() for d in owners.get(name.split(".")[0], [])}
        if dists and not dists & allowed:
            return None
        return super().find_spec(name, path, target)

sys.meta_path[sys.meta_path.index(importlib.machinery.PathFinder)] = OnlyListed
import mlflow, numpy, pandas
model = mlflow.pyfunc.load_model(sys.argv[1])
answer = model.predict(pandas.DataFrame({"pixels": [numpy.zeros((8, 8, 1), numpy.uint8)]}))
assert answer["error"].isna().all(), answer["error"].tolist()
"""


def _with_dependencies(names: set[str]) -> set[str]:
    """``names`` and everything they require, as pip would install them (no extras)."""
    from importlib import metadata  # noqa: PLC0415

    from packaging.requirements import Requirement  # noqa: PLC0415
    from packaging.utils import canonicalize_name  # noqa: PLC0415

    found, todo = set(), [canonicalize_name(n) for n in names]
    while todo:
        name = todo.pop()
        if name in found:
            continue
        try:
            requires = metadata.requires(name) or []
        except metadata.PackageNotFoundError:  # required, not installed here: not importable
            continue
        found.add(name)
        for line in requires:
            requirement = Requirement(line)
            if requirement.marker is None or requirement.marker.evaluate({"extra": ""}):
                todo.append(canonicalize_name(requirement.name))
    return found


def test_a_registered_version_loads_with_only_its_requirements(lifecycle, registry):
    """A version's requirements.txt is what `mlflow models serve --env-manager
    virtualenv` or a Docker image installs: a package the model needs and the file omits
    breaks them."""
    from packaging.requirements import Requirement  # noqa: PLC0415

    uri = f"models:/{NAME}@champion"
    listed = Path(mlflow.pyfunc.get_model_dependencies(uri)).read_text().split()
    # the project's own code travels inside the model (code_paths), its dependencies not
    installed = _with_dependencies({Requirement(line).name for line in listed}) | {
        "model-lifecycle"}
    done = subprocess.run([sys.executable, "-c", _ONLY_LISTED, uri, json.dumps(sorted(installed))],
                          cwd=lifecycle.work, capture_output=True, text=True, check=False,
                          env={**os.environ, "MLFLOW_TRACKING_URI": mlflow.get_tracking_uri()})
    assert done.returncode == 0, done.stderr[-1500:]


def test_inference_pipeline_predicts_a_folder_and_reports_bad_files(lifecycle, registry,
                                                                    tmp_path):
    images, _ = _test_images(lifecycle.work, 4)
    folder = tmp_path / "incoming"
    (folder / "sub").mkdir(parents=True)
    for i, image in enumerate(images):
        (folder / ("sub" if i % 2 else "") / f"{i}.png").write_bytes(_encode(image, "PNG"))
    (folder / "broken.jpg").write_bytes(b"\xff\xd8 not really a jpeg")
    (folder / "huge.png").write_bytes(bomb_png())  # a decompression bomb: 400 MP, 100 bytes
    lifecycle(["inference"], {"inference": {"input_dir": str(folder)}})

    predictions = TableDataset(filepath=str(_latest(
        lifecycle.work, "data/07_model_output/predictions.csv")),
        load_args={"dtype": {"class": str}}).load()
    assert list(predictions["file"]) == ["0.png", "2.png", "broken.jpg", "huge.png",
                                         "sub/1.png", "sub/3.png"]
    bad = predictions.set_index("file").loc["broken.jpg"]
    assert pd.isna(bad["class"]) and isinstance(bad["error"], str)
    huge = predictions.set_index("file").loc["huge.png"]
    assert pd.isna(huge["class"]) and "pixels" in huge["error"]
    champion = str(registry.get_model_version_by_alias(NAME, "champion").version)
    assert (predictions["model_version"].astype(str) == champion).all()
    served = mlflow.pyfunc.load_model(f"models:/{NAME}@champion")
    direct = served.predict(pd.DataFrame({"image": [_encode(i, "PNG") for i in images]}))
    good = predictions.dropna(subset=["class"]).set_index("file")
    for i in range(len(images)):
        name = f"{'sub/' if i % 2 else ''}{i}.png"
        assert good.loc[name, "class"] == direct["class"][i]


def test_starting_past_nodes_whose_outputs_are_in_memory_names_where_to_start(lifecycle):
    from kedro.framework.session import KedroSession  # noqa: PLC0415

    with KedroSession.create(project_path=lifecycle.work) as session, pytest.raises(
            LifecycleError, match=r"^Inputs 'adversarial_report', 'onnx_report', "
            r"'variant_quality' are not saved between runs \(in memory only\): start the "
            r"run at the nodes that make them, with `kedro run --from-nodes="
            r"measure_adversarial_robustness,measure_onnx,evaluate_variants`\.$"):
        session.run(from_nodes=["assemble_report"])


def test_inference_errors_name_the_fix(project, tmp_path):
    with pytest.raises(LifecycleError, match="inference.input_dir is not set"):
        project(["inference"])
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(LifecycleError, match=r"inference.input_dir '.*empty' holds no image files"):
        project(["inference"], {"inference": {"input_dir": str(empty)}})
    with pytest.raises(LifecycleError, match=r"'.*missing' is not a folder"):
        project(["inference"], {"inference": {"input_dir": str(tmp_path / "missing")}})
    # refused before a run is opened: a typo leaves no FAILED run behind
    assert not (project.work / "mlflow.db").exists() or _runs(project.work).empty
    (empty / "a.png").write_bytes(_encode(np.zeros((1, 8, 8), np.uint8), "PNG"))
    with pytest.raises(LifecycleError, match=r"No version of registered model "
                       r"'model-lifecycle' holds the alias 'champion'.*run `kedro run`"):
        project(["inference"], {"inference": {"input_dir": str(empty)}})
    assert _runs(project.work).empty  # found before the run opened, too


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextlib.contextmanager
def _serving(work: Path) -> Iterator[tuple[str, subprocess.Popen]]:
    """``mlflow models serve`` of the champion, as ``make serve`` starts it, on a free
    port: its URL (once /ping answers) and its process, stopped on exit."""
    port = _free_port()
    store = f"sqlite:///{work / 'mlflow.db'}"
    # both URIs: an earlier test's mlflow.set_registry_uri leaves its own in the environment
    env = {**os.environ, "MLFLOW_TRACKING_URI": store, "MLFLOW_REGISTRY_URI": store,
           # the scoring server is started as `uvicorn …`, found on PATH
           "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"}
    log = tempfile.TemporaryFile()  # not a pipe: a full pipe would block the server
    server = subprocess.Popen(
        [sys.executable, "-m", "mlflow", "models", "serve", "-m", f"models:/{NAME}@champion",
         "--env-manager", "local", "-h", "127.0.0.1", "-p", str(port)],
        env=env, cwd=PROJECT_ROOT.parent, start_new_session=True,
        stdout=log, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 120
        while True:
            try:
                urllib.request.urlopen(f"{url}/ping", timeout=2)
                break
            except OSError:  # refused, reset, or no answer in time (TimeoutError)
                if server.poll() is not None or time.monotonic() > deadline:
                    log.seek(0)
                    pytest.fail(f"the server did not start:\n{log.read().decode()}")
                time.sleep(0.5)
        yield url, server
    finally:
        with contextlib.suppress(ProcessLookupError):  # it may have exited already
            os.killpg(server.pid, signal.SIGTERM)
        server.wait(timeout=30)
        log.close()


@pytest.fixture(scope="module")
def served(lifecycle) -> Iterator[tuple[str, subprocess.Popen]]:
    """One ``mlflow models serve`` of the lifecycle's champion for the serving tests (a
    start takes seconds): its URL and process."""
    with _serving(lifecycle.work) as started:
        yield started


def _post(url: str, body: dict) -> dict:
    request = urllib.request.Request(url, data=json.dumps(body).encode(),
                                     headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=60) as response:
        return json.loads(response.read(), parse_constant=_not_json)


def _send(url: str, data: bytes) -> tuple[int, str]:
    """POST ``data`` as JSON; the status and the body, whatever the status."""
    request = urllib.request.Request(url, data=data,
                                     headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=60) as response:
            return response.status, response.read().decode()
    except urllib.error.HTTPError as error:
        return error.code, error.read().decode()


def _not_json(constant: str):
    """Strict JSON: NaN and Infinity, which Python's parser accepts, are refused."""
    raise ValueError(f"the answer holds {constant}, which is not JSON")


def test_mlflow_models_serve_answers_like_the_model_in_process(lifecycle, registry, served):
    url, _ = served
    images, _ = _test_images(lifecycle.work, 4)
    encoded = [_encode(images[0], "PNG"), _encode(images[1], "JPEG"),
               _encode(images[2], "PNG"), _encode(images[3], "JPEG")]
    body = {"dataframe_split": {"columns": ["image"], "data": [
        [base64.b64encode(data).decode()] for data in encoded]}}
    answers = _post(f"{url}/invocations", body)["predictions"]
    # an oversized image among good ones: its row says why, the others are answered
    mixed = {"dataframe_split": {"columns": ["image"], "data": [
        [base64.b64encode(encoded[0]).decode()], [base64.b64encode(bomb_png()).decode()]]}}
    good, huge = _post(f"{url}/invocations", mixed)["predictions"]
    assert good["class"] == answers[0]["class"] and good["error"] is None
    assert huge["class"] is None and "pixels" in huge["error"]
    assert "Traceback" not in huge["error"] and "/" not in huge["error"]  # no server paths
    in_process = mlflow.pyfunc.load_model(f"models:/{NAME}@champion").predict(
        pd.DataFrame({"image": encoded}))
    assert [a["class"] for a in answers] == list(in_process["class"])
    for answer, (_, row) in zip(answers, in_process.iterrows(), strict=True):
        assert answer["confidence"] == pytest.approx(row["confidence"], abs=1e-6)
        assert answer["probabilities"] == pytest.approx(row["probabilities"], abs=1e-6)
        assert answer["error"] is None


def _split(column: str, values: list) -> bytes:
    return json.dumps({"dataframe_split": {"columns": [column],
                                           "data": [[v] for v in values]}}).encode()


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def test_bad_requests_get_a_4xx_or_row_errors_in_strict_json_and_the_server_stays_up(
        lifecycle, registry, served):
    # the champion is the digits model: grayscale 8×8, register.max_rows 1,000
    images, _ = _test_images(lifecycle.work, 1)
    good = _b64(_encode(images[0], "PNG"))
    rgb = np.random.default_rng(0).integers(0, 256, (12, 12, 3), dtype=np.uint8)
    rgb_png = io.BytesIO()
    Image.fromarray(rgb).save(rgb_png, format="PNG")
    requests = {  # name: (body, expected status)
        "non-image bytes": (_split("image", [_b64(b"plain text, not an image")]), 200),
        "an empty string": (_split("image", [""]), 200),
        "an unknown column": (_split("picture", [good]), 400),
        "malformed JSON": (b'{"dataframe_split": {"columns": ["image"], "data": [[', 400),
        "an oversized image": (_split("image", [_b64(bomb_png())]), 200),
        "1,000 rows": (_split("image", [good] * 1000), 200),
        "1,001 rows": (_split("image", [good] * 1001), 400),
        "an RGB image to a grayscale model": (_split("image", [_b64(rgb_png.getvalue())]),
                                              200),
        "RGB pixels to a grayscale model": (_split("pixels", [rgb.tolist()]), 200),
        "good rows mixed with bad ones": (_split("image", [
            good, _b64(b"junk"), "", _b64(bomb_png()), good]), 200),
        "ragged pixel rows": (_split("pixels", [[[[1], [2]], [[3]]]]), 200),
        "text that is not base64": (_split("image", ["not base64!"]), 200),
        "a null image": (_split("image", [None]), 200),
        "fractional pixels": (_split("pixels", [[[0.5, 0.25], [0.0, 1.0]]]), 200),
        "base64 in MLflow's inputs form": (json.dumps({"inputs": [{"image": good}]}).encode(),
                                           200),
    }
    url, server = served
    answers = {name: _send(f"{url}/invocations", body) for name, (body, _) in requests.items()}
    assert server.poll() is None  # still running
    with urllib.request.urlopen(f"{url}/ping", timeout=10) as ping:
        assert ping.status == 200
    after = _post(f"{url}/invocations", json.loads(_split("image", [good])))
    assert after["predictions"][0]["error"] is None
    expected_class = after["predictions"][0]["class"]

    bodies = {}
    for name, (status, text) in answers.items():
        assert status == requests[name][1], (name, status, text[:500])
        assert "Traceback" not in text, name
        bodies[name] = body = json.loads(text, parse_constant=_not_json)  # strict JSON
        if status != 200:
            assert set(body) >= {"error_code", "message"} and "stack_trace" not in body, name
            continue
        for row in body["predictions"]:
            assert set(row) == {"class", "confidence", "probabilities", "error"}, name
            if row["error"] is None:
                assert row["class"] in [str(c) for c in range(10)], name
                assert sum(row["probabilities"].values()) == pytest.approx(1, abs=1e-5)
            else:
                assert row["class"] is row["confidence"] is row["probabilities"] is None, name
                assert "\n" not in row["error"] and "/" not in row["error"], name

    def error(name: str) -> str:
        return bodies[name]["predictions"][0]["error"]

    assert error("non-image bytes") == "not an image PIL can read"
    assert error("an empty string") == "an empty image: the 'image' value holds no bytes"
    assert "pixels" in error("an oversized image")
    assert "ingest.max_pixels" in error("an oversized image")
    assert "equal lengths" in error("ragged pixel rows")
    for name in ("an RGB image to a grayscale model", "RGB pixels to a grayscale model"):
        assert error(name) is None
    assert len(bodies["1,000 rows"]["predictions"]) == 1000
    assert {row["class"] for row in bodies["1,000 rows"]["predictions"]} == {expected_class}
    mixed = bodies["good rows mixed with bad ones"]["predictions"]
    assert [row["class"] for row in mixed] == [expected_class, None, None, None,
                                               expected_class]
    # the model's own refusals: one sentence, not the request echoed back
    assert bodies["an unknown column"]["message"].startswith(
        "The request has neither an 'image' column")
    assert bodies["1,001 rows"]["message"] == (
        "The request has 1,001 rows, more than the 1,000 this model answers at once "
        "(register.max_rows): send at most 1,000 images per request.")
    # MLflow's own, before the model is called: a 400 that says what is wrong
    assert "valid JSON" in bodies["malformed JSON"]["message"]
    # values MLflow's server once refused whole (it converts none now): that row's error
    assert error("text that is not base64") == ("'image' text that is not base64: send the "
                                                "base64 of the image file's bytes")
    assert error("a null image").startswith("no image: give each row an 'image'")
    assert "fractions" in error("fractional pixels")
    assert bodies["base64 in MLflow's inputs form"]["predictions"][0]["class"] == \
        expected_class


def test_the_notebook_runs_top_to_bottom(lifecycle, registry):
    # the models registered last, under a name given with --params (as a user with their
    # own data does): the notebook follows them, not conf's register.model_name
    other = "notebook-check"
    lifecycle(["register"], {**TINY, "register": {"model_name": other}})
    notebook = nbformat.read(PROJECT_ROOT / "notebooks" / "compare_variants.ipynb",
                             as_version=4)
    nbclient.NotebookClient(notebook, timeout=300, kernel_name="python3", resources={
        "metadata": {"path": str(lifecycle.work)}}).execute()
    printed = "".join(output.get("text", "") for cell in notebook.cells
                      if cell.cell_type == "code" for output in cell.outputs)
    assert f"model: {other}" in printed
    version = registry.get_model_version_by_alias(other, "champion")
    assert f"champion: version {version.version} ({version.tags['variant']})" in printed


def test_compressed_variants_of_an_older_fine_tuned_model_are_refused(lifecycle):
    """Fine-tuned again (here from scratch): evaluate would put the new fine-tuned model
    beside the old one's pruned, INT8 and distilled models, and register them as one
    lifecycle. Refused in one sentence; compressing again makes them agree."""
    work = lifecycle.work
    lifecycle(["finetune"], {**TINY, "finetune": {**TINY["finetune"], "init": "scratch",
                                                  "arch_kwargs": {"width": 4}}})
    with pytest.raises(LifecycleError, match=(
            r"^The latest pruned_model was made from another finetuned_model than the "
            r"latest \(made again since by `kedro run --pipelines=finetune`")):
        lifecycle(["evaluate"], TINY)
    onnx_file = _latest(work, "data/06_models/onnx_int8_model.onnx")
    lifecycle(["compress"], TINY)
    # the ONNX file remembers what it was made from too
    assert _latest(work, "data/06_models/onnx_int8_model.onnx") != onnx_file
    made = OnnxModelDataset(filepath=str(_latest(
        work, "data/06_models/onnx_int8_model.onnx"))).load().trained_on["made_from"]
    finetuned = TorchModelDataset(filepath=str(_latest(
        work, "data/06_models/finetuned_model.pt"))).load()
    assert made["finetuned_model"] == finetuned.trained_on["model_id"]
    lifecycle(["explain", "evaluate"], TINY)


def test_the_from_scratch_baseline_joins_the_report_when_asked(lifecycle):
    # last in this module: it adds a newer evaluation report to the shared project
    tiny_scratch = {**TINY, "evaluate": {**TINY["evaluate"], "include_scratch": True}}
    with pytest.raises(LifecycleError, match=r"Input 'scratch_model' has never been "
                       r"produced: run `kedro run --pipelines=baseline` first, or set "
                       r"evaluate.include_scratch: false"):
        lifecycle(["evaluate"], tiny_scratch)
    # the baseline builds finetune.arch / arch_kwargs: here, the pretrained encoder's
    lifecycle(["baseline"], {**TINY, "finetune": {**TINY["finetune"],
                                                  "arch_kwargs": {"width": 4}}})
    lifecycle(["evaluate"], tiny_scratch)
    report = _report(lifecycle.work).set_index("variant")
    assert tuple(report.index) == (*VARIANTS, "scratch")
    assert report.loc["scratch", "params"] == report.loc["finetuned", "params"]
    run = _runs(lifecycle.work).iloc[-2]  # the baseline run
    assert 0 <= run["metrics.scratch.test_accuracy"] <= 1
    assert report.loc["scratch", "accuracy"] == pytest.approx(
        run["metrics.scratch.test_accuracy"])


def test_adversarial_fine_tuning_joins_the_report_when_asked(lifecycle):
    # late in this module: it adds a newer evaluation report to the shared project
    tiny_robust = {**TINY, "evaluate": {**TINY["evaluate"], "include_robust": True}}
    with pytest.raises(LifecycleError, match=r"Input 'robust_model' has never been "
                       r"produced: run `kedro run --pipelines=robust` first"):
        lifecycle(["evaluate"], tiny_robust)
    lifecycle(["robust"], TINY)
    run = _runs(lifecycle.work).iloc[-1]
    client = mlflow.MlflowClient()
    checks = sorted(client.get_metric_history(run["run_id"], "robust.val_pgd_accuracy"),
                    key=lambda metric: metric.step)
    # the guard attacked val after each of the 3 epochs; then the kept epoch's, latest
    assert len(checks) == 4
    kept = int(run["metrics.robust.best_epoch"])
    assert checks[-1].value == next(m.value for m in checks if m.step == kept)
    lifecycle(["explain", "evaluate"], tiny_robust)
    report = _report(lifecycle.work).set_index("variant")
    assert report.index[-1] == "robust"
    assert report.loc["robust", "attack"] == "white-box"
    assert 0 <= report.loc["robust", "pgd_accuracy"] <= 1
    assert report.loc["robust", "method"] == "none (adversarial fine-tuning)"


def test_a_variant_added_to_the_declaration_is_evaluated_and_registered(lifecycle, registry,
                                                                        monkeypatch):
    # last in this module: one more variant, here the fine-tuned model under another
    # name, needs one entry and nothing else in explain, evaluate or register
    from model_lifecycle import variants  # noqa: PLC0415

    extra = variants.Variant("finetuned_again", "finetuned_model", "finetune",
                             "the fine-tuned model, declared twice")
    monkeypatch.setattr(variants, "VARIANTS", (*variants.VARIANTS, extra))
    run = project_runner(lifecycle.work)  # re-reads the pipelines
    try:
        run(["explain", "evaluate", "register"], TINY)
    finally:
        monkeypatch.undo()
        project_runner(lifecycle.work)
    report = _report(lifecycle.work).set_index("variant")
    assert tuple(report.index) == (*VARIANTS, "finetuned_again")
    assert report.loc["finetuned_again", "method"] == "the fine-tuned model, declared twice"
    assert report.loc["finetuned_again", "accuracy"] == report.loc["finetuned", "accuracy"]
    # the same model explained the same way: no drift from the baseline
    assert report.loc["finetuned_again", "attribution_drift"] == pytest.approx(0, abs=1e-9)
    versions = registry.search_model_versions(f"name='{NAME}'")
    assert "finetuned_again" in {v.tags["variant"] for v in versions}
