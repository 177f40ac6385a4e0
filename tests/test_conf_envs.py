"""Every environment under conf/ loads and validates, and the CIFAR-10 recipe
(``--env=cifar10``) runs the whole lifecycle on a tiny CIFAR-format archive."""

from __future__ import annotations

import logging
import re
import tarfile
from pathlib import Path

import mlflow
import pytest
from kedro.config import OmegaConfigLoader

from model_lifecycle.hooks import NAMESPACES, PARAMETER_MODELS
from model_lifecycle.params import dropped_by_env, parse_params
from tests.conftest import PROJECT_ROOT, project_runner, scratch_project

CONF = PROJECT_ROOT / "conf"
ENVIRONMENTS = sorted(p.name for p in CONF.iterdir() if p.is_dir() and p.name != "local")


def _config(env: str) -> OmegaConfigLoader:
    return OmegaConfigLoader(str(CONF), base_env="base", default_run_env=env,
                             config_patterns={"mlflow": ["mlflow*", "mlflow*/**"]})


def test_there_is_more_than_the_base_environment():
    assert {"base", "cifar10"} <= set(ENVIRONMENTS)


@pytest.mark.parametrize("env", ENVIRONMENTS)
def test_every_environment_validates_every_group(env):
    config = _config(env)
    parameters = config["parameters"]
    assert set(parameters) == set(PARAMETER_MODELS) | set(NAMESPACES), env  # no stray one
    groups = [(group, parameters[group]) for group in PARAMETER_MODELS]
    groups += [(f"{ns}.{group}", parameters[ns].get(group, {}))  # e.g. source.pretrain
               for ns, names in NAMESPACES.items() for group in names]
    for group, given in groups:
        model, raw = PARAMETER_MODELS[group.rpartition(".")[2]], dict(given)
        if group.endswith("ingest") and raw.get("source") != "digits" and not raw.get("path"):
            raw["path"] = "/data/given-on-the-command-line"  # as its README command does
        parse_params(model, raw, group)
    assert "images" in config["catalog"]
    assert config["mlflow"]["tracking"]["experiment"]["name"] == "model-lifecycle"


@pytest.mark.parametrize("env", [e for e in ENVIRONMENTS if e != "base"])
def test_no_key_of_an_environment_falls_back_to_a_default_unseen(env, monkeypatch):
    """Kedro replaces base's whole group with an environment's: a key base sets and the
    environment's group omits takes the code's default. Each environment writes such a
    key out, so the run's own warning (dropped_by_env) stays for users' files."""
    parameters = _config(env)["parameters"]
    groups = {}
    for group, model in PARAMETER_MODELS.items():
        raw = dict(parameters[group])
        if group == "ingest" and raw.get("source") != "digits" and not raw.get("path"):
            raw["path"] = "/data/given-on-the-command-line"
        groups[group] = parse_params(model, raw, group)
    monkeypatch.chdir(PROJECT_ROOT)
    assert dropped_by_env(groups, env) == []


def test_a_local_group_that_drops_a_base_key_is_named(tmp_path, monkeypatch):
    (tmp_path / "conf" / "base").mkdir(parents=True)
    (tmp_path / "conf" / "local").mkdir()
    (tmp_path / "conf" / "base" / "parameters_ingest.yml").write_text(
        "ingest:\n  image_size: 16\n  labeled_fraction: 0.05\n  seed: 0\n")
    (tmp_path / "conf" / "local" / "parameters_ingest.yml").write_text(
        "ingest:\n  image_size: 24\n")
    monkeypatch.chdir(tmp_path)
    from model_lifecycle.data.config import IngestParams  # noqa: PLC0415

    used = {"ingest": IngestParams(image_size=24)}  # what Kedro's merge hands the run
    assert dropped_by_env(used, None) == [
        "conf/local/parameters_ingest.yml gives the 'ingest' group without "
        "labeled_fraction (0.05 in conf/base/parameters_ingest.yml), so the run uses 1.0: an "
        "environment's group replaces base's whole group; add the key to keep base's value."]
    # given on the command line: the user's own value, nothing to warn about
    used = {"ingest": IngestParams(image_size=24, labeled_fraction=0.5)}
    assert dropped_by_env(used, None, frozenset({"ingest", "ingest.labeled_fraction"})) == []


def test_the_cifar10_environment_holds_every_group_of_its_recipe():
    files = {p.stem.removeprefix("parameters_")
             for p in (CONF / "cifar10").glob("parameters_*.yml")}
    assert files == set(PARAMETER_MODELS) - {"inference"}
    params = _config("cifar10")["parameters"]
    assert params["finetune"]["budget_seconds"] == 600  # the README's 10-minute recipe
    assert params["finetune"]["arch"] == "fast_cnn" and params["finetune"]["whiten_stem"]
    assert params["compress"]["prune"]["structured"]["keep_stem"]
    assert params["augment"]["supervised"]["random_erasing"] is None


@pytest.fixture
def cifar_archive(cifar_dir: Path, tmp_path: Path) -> Path:
    """The tiny ``cifar-10-batches-py/`` of conftest as ``cifar-10-python.tar.gz``."""
    archive = tmp_path / "cifar-10-python.tar.gz"
    with tarfile.open(archive, "w:gz") as tar:
        tar.add(cifar_dir, arcname="cifar-10-batches-py")
    return archive


def test_the_cifar10_environment_runs_end_to_end_on_a_tiny_archive(cifar_archive, tmp_path,
                                                                   monkeypatch, caplog):
    work = scratch_project(tmp_path / "work")
    monkeypatch.chdir(work)
    run = project_runner(work)
    # the recipe as it is, with budgets and epochs a test can afford
    tiny = {"ingest": {"path": str(cifar_archive), "splits": {"val": 0.25}},
            # SimCLR for one epoch (its budget is tests/training/test_budget.py's)
            "pretrain": {"budget_seconds": None, "epochs": 1, "batch_size": 16,
                         "hidden_dim": 16, "projection_dim": 8},
            # a budget sets the epochs (how well it keeps time is test_budget.py's)
            "finetune": {"budget_seconds": 3, "batch_size": 16},
            "compress": {"prune": {"recovery": {"epochs_per_step": 1, "final_epochs": 1,
                                                "batch_size": 16},
                                   "structured": {"steps": 1}},
                         "distill": {"epochs": 1, "batch_size": 16},
                         "quantize": {"calibration_batches": 1}},
            "evaluate": {"latency": {"repeats": 3, "warmup": 1},
                         "robustness": {"images": 20, "severities": [5]},
                         "adversarial": {"images": 20, "steps": 2}},
            "explain": {"images_per_class": 1, "ig_steps": 4, "curve_steps": 4,
                        "occlusion_window": 8, "occlusion_stride": 8},
            # bfloat16's first calls (oneDNN building its kernels) made a 10-s budget too
            # short for a tiny run; bfloat16 itself is tests/training/test_loop.py's
            "runtime": {"num_threads": 2, "cpu_bfloat16": False}}
    budget_log = logging.getLogger("model_lifecycle.training.budget")
    budget_log.addHandler(caplog.handler)  # (Kedro's logging does not propagate it)
    try:
        run(None, tiny, env="cifar10")
    finally:
        budget_log.removeHandler(caplog.handler)
    mlflow.set_tracking_uri(f"sqlite:///{work / 'mlflow.db'}")
    [result] = mlflow.search_runs(experiment_names=["model-lifecycle"]).to_dict("records")
    assert result["status"] == "FINISHED"
    assert result["params.finetune.arch"] == "fast_cnn"
    assert result["params.ingest.source"] == "auto"
    assert result["metrics.ingest.n_images"] == 100  # 80 training + 20 test images
    # the budget, not the conf's `epochs: 1`, set the epochs (how well it keeps time is
    # tests/training/test_budget.py's business; on a busy machine its deadline may end
    # the run at exactly one epoch, so the plan is read from the log)
    assert re.search(r"finetune\.budget_seconds = 3: .* warm-up, .*: [0-9.]+ epochs",
                     caplog.text)
    assert 0 < result["metrics.finetune.train_seconds"] < 3 * 2
    assert result["metrics.pruned.macs_reduction"] >= 2.0
    client = mlflow.MlflowClient()
    versions = client.search_model_versions("name='model-lifecycle'")
    assert {v.tags["variant"] for v in versions} == {"finetuned", "pruned", "quantized",
                                                     "onnx_int8", "distilled"}
