"""Crash safety: a ``kedro run --pipelines=finetune`` SIGKILLed in the middle of training
(after a checkpoint) leaves every earlier dataset and model version loadable and its
MLflow run unfinished; ``resume: true`` then finishes it from the checkpoint's epoch with
bit-for-bit the model, and metric history, of a run that was never interrupted (made in
the test's own process: the same bits in another process, too)."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import mlflow
import pytest
import torch
from kedro.config import OmegaConfigLoader
from kedro.io import AbstractDataset

from model_lifecycle.hooks import PID_TAG
from model_lifecycle.training.checkpoint import load_checkpoint

EPOCHS = 4
KILL_AFTER = 1  # 0-based epoch whose checkpoint the killed run must have written
# Ingest and augment run once, in the test's process: the earlier versions.
DATA = {"ingest": {"image_size": 16, "labeled_fraction": 0.5},
        "augment": {"supervised": {"mixup": {"alpha": 0.2}}}}  # mixup: global-RNG draws
# The fine-tune every `kedro run` below shares: from scratch (no pretrain), with EMA
# (more state to resume), on one thread (bit-exact, and epochs slow enough to catch).
FINETUNE = {"finetune.init": "scratch", "finetune.epochs": EPOCHS, "finetune.batch_size": 64,
            "finetune.ema_decay": 0.9, "runtime.num_threads": 1, "runtime.seed": 0}
ENV = {"DO_NOT_TRACK": "1", "KEDRO_DISABLE_TELEMETRY": "true", "MPLBACKEND": "Agg",
       "PYTHONUNBUFFERED": "1",  # the killed run's output up to the kill
       "COLUMNS": "250"}  # no wrapped log lines
PROGRESS = re.compile(r"finetune epoch (\d+)/(\d+)")


def _command(params: dict) -> list[str]:
    pairs = ",".join(f"{key}={str(value).lower() if isinstance(value, bool) else value}"
                     for key, value in {**FINETUNE, **params}.items())
    return [sys.executable, "-m", "kedro", "run", "--pipelines=finetune", "--params", pairs]


def _kedro_run(work: Path, log: Path, params: dict) -> str:
    """``kedro run --pipelines=finetune`` to the end; returns its output."""
    with log.open("w") as out:
        done = subprocess.run(_command(params), cwd=work, env={**os.environ, **ENV},
                              stdout=out, stderr=subprocess.STDOUT, timeout=300, check=False)
    output = log.read_text()
    assert done.returncode == 0, output[-3000:]
    return output


def _kill_after_checkpoint(work: Path, log: Path, checkpoint: Path, epoch: int) -> int:
    """Start ``kedro run --pipelines=finetune`` writing ``checkpoint``; SIGKILL its
    process group as soon as the checkpoint records ``epoch`` (or a later one); return
    the killed process's id."""
    with log.open("w") as out:
        process = subprocess.Popen(_command({"finetune.checkpoint": checkpoint}), cwd=work,
                                   env={**os.environ, **ENV}, stdout=out,
                                   stderr=subprocess.STDOUT, start_new_session=True)
    try:
        seen, deadline = None, time.monotonic() + 300
        while time.monotonic() < deadline:
            if process.poll() is not None:
                pytest.fail(f"the run ended (exit {process.returncode}) before its checkpoint "
                            f"of epoch {epoch}: nothing was killed\n{log.read_text()[-3000:]}")
            try:
                stat = checkpoint.stat()
            except FileNotFoundError:
                stat = None
            if stat is not None and (stat.st_ino, stat.st_mtime_ns) != seen:
                seen = (stat.st_ino, stat.st_mtime_ns)  # a new file (os.replace)
                if load_checkpoint(checkpoint)["epoch"] >= epoch:
                    os.killpg(process.pid, signal.SIGKILL)
                    break
            time.sleep(0.005)
        else:
            pytest.fail(f"no checkpoint of epoch {epoch} in 300 s\n{log.read_text()[-3000:]}")
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)
        process.wait()
    assert process.returncode == -signal.SIGKILL, (
        f"the run finished (exit {process.returncode}) before it could be killed: make its "
        "epochs slower")
    return process.pid


def _versions(work: Path) -> dict[str, list[str]]:
    """Every saved version of every versioned catalog dataset, loaded with its own
    dataset class: {dataset: [version, …]}."""
    catalog = OmegaConfigLoader(str(work / "conf"), base_env="base",
                                default_run_env="local")["catalog"]
    found = {}
    for name, entry in catalog.items():
        if name.startswith("_") or not entry.get("versioned"):
            continue
        filepath = work / entry["filepath"]
        config = {**entry, "filepath": str(filepath)}
        versions = sorted(path.parent.name for path in filepath.glob(f"*/{filepath.name}"))
        for version in versions:
            dataset = AbstractDataset.from_config(name, config, load_version=version)
            assert dataset.load() is not None, f"{name} {version}"
        if versions:
            found[name] = versions
    return found


def _epochs(output: str) -> list[int]:
    """The 1-based epochs a run's progress lines report."""
    return [int(m.group(1)) for m in PROGRESS.finditer(output)
            if int(m.group(2)) == EPOCHS]


def _history(client: mlflow.MlflowClient, run_id: str, metric: str) -> list[tuple]:
    return sorted((m.step, m.value) for m in client.get_metric_history(run_id, metric))


def _nested(dotted: dict) -> dict:
    nested: dict = {}
    for key, value in dotted.items():
        *groups, leaf = key.split(".")
        node = nested
        for group in groups:
            node = node.setdefault(group, {})
        node[leaf] = value
    return nested


def test_a_killed_finetune_leaves_earlier_versions_and_resumes_bit_exactly(project, tmp_path):
    work = project.work
    project(["ingest", "augment"], DATA)
    # The uninterrupted run (in this process: a third `kedro run` would cost ~10 s of
    # imports), with its own checkpoint: its model is the earlier version of
    # finetuned_model, and what the resumed run must reproduce.
    threads = torch.get_num_threads()
    try:
        project(["finetune"], _nested({
            **FINETUNE, "finetune.checkpoint": str(work / "data/checkpoints/reference.pt")}))
    finally:
        torch.set_num_threads(threads)  # runtime.num_threads sets it for the process
    before = _versions(work)
    assert set(before) == {"images", "novel_images", "splits", "augmentation_policy",
                           "finetuned_model", "lora_adapter"}

    checkpoint = work / "data/checkpoints/crash.pt"
    pid = _kill_after_checkpoint(work, tmp_path / "killed.log", checkpoint, KILL_AFTER)
    saved = load_checkpoint(checkpoint)  # written atomically: whole, whenever the kill came
    assert KILL_AFTER <= saved["epoch"] < EPOCHS - 1, (
        f"killed after epoch {saved['epoch'] + 1} of {EPOCHS}: nothing left to resume")
    # Every earlier version still loads; the killed run wrote none and no partial file.
    assert _versions(work) == before
    # (a checkpoint's own temporary file may stay: the next save of it removes it)
    assert not [p for p in (work / "data").rglob("*.tmp-*") if "checkpoints" not in p.parts]
    client = mlflow.MlflowClient(tracking_uri=f"sqlite:///{work / 'mlflow.db'}")
    [experiment] = client.search_experiments(filter_string="name = 'model-lifecycle'")

    def runs() -> list:
        return client.search_runs([experiment.experiment_id],
                                  order_by=["attributes.start_time ASC"])

    _, _, killed = runs()  # ingest+augment, the reference, the killed run
    assert killed.data.tags[PID_TAG] == str(pid)
    assert killed.info.status == "RUNNING"  # nothing has run since to notice the kill

    resumed_log = _kedro_run(work, tmp_path / "resumed.log",
                             {"finetune.checkpoint": checkpoint, "finetune.resume": True})
    assert f"resuming from {checkpoint} after epoch {saved['epoch'] + 1}" in resumed_log
    assert _epochs(resumed_log) == list(range(saved["epoch"] + 2, EPOCHS + 1))
    _, reference_run, killed, resumed_run = runs()
    assert killed.info.status == "KILLED"  # by the resumed run's bookkeeping hook
    assert resumed_run.info.status == "FINISHED"

    after = _versions(work)
    assert after["finetuned_model"][:-1] == before["finetuned_model"]
    reference, resumed = (
        AbstractDataset.from_config("finetuned_model", {
            "type": "model_lifecycle.io.TorchModelDataset", "versioned": True,
            "filepath": str(work / "data/06_models/finetuned_model.pt")},
            load_version=version).load().state_dict()
        for version in after["finetuned_model"])
    assert reference.keys() == resumed.keys()
    assert [key for key in reference if not torch.equal(reference[key], resumed[key])] == []
    # The resumed run logs the whole run's history: the epochs before the kill come
    # from the checkpoint, the final scores from the same weights.
    for metric in ("finetune.train_loss", "finetune.val_accuracy", "finetune.test_accuracy"):
        expected = _history(client, reference_run.info.run_id, metric)
        assert expected and _history(client, resumed_run.info.run_id, metric) == expected
