"""DistributedDataParallel launched from inside the training node (runtime.distributed):
two gloo ranks train like one process on the same global batch, inside ``kedro run``
with one MLflow run and one model version; a rank that dies stops the node with one
sentence and saves nothing; impossible set-ups are refused before anything runs.

Each launch starts fresh Python processes (a few seconds): the tests launch sparingly.
This module imports no Kedro at import time, because ranks import it to run `probe`.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from torch.distributed.elastic.multiprocessing.errors import ChildFailedError, ProcessFailure

from model_lifecycle.augment.config import SupervisedPolicy
from model_lifecycle.errors import LifecycleError
from model_lifecycle.models.registry import build_model
from model_lifecycle.training.config import DistributedParams, FinetuneParams, RuntimeParams
from model_lifecycle.training.data import BatchStream
from model_lifecycle.training.distributed import FAULT_ENV, _root_failure, launch, processors
from model_lifecycle.training.finetune import finetune

TWO = {"nproc_per_node": 2}
# finetune from scratch on the tiny digits, 4 epochs of the global batch 64
FINETUNE = {"init": "scratch", "epochs": 4, "batch_size": 64,
            "schedule": {"kind": "onecycle", "warmup_epochs": 1}}
DATA = {"ingest": {"image_size": 8, "labeled_fraction": 0.3}}


def _tiny(n: int = 160, seed: int = 0):
    rng = np.random.default_rng(seed)
    images = rng.integers(0, 256, (n, 1, 8, 8), dtype=np.uint8)
    labels = (np.arange(n) % 3).astype(np.int64)
    images[labels == 1, :, :4] //= 2  # something to learn
    splits = {"train_labeled": np.arange(0, 96), "train_unlabeled": np.arange(0, 0),
              "val": np.arange(96, 128), "test": np.arange(128, n)}
    return images, labels, splits


# --- the shards ---------------------------------------------------------------------------

@pytest.mark.parametrize("n_images", [64, 70, 7])
def test_the_ranks_steps_together_are_one_process_step(n_images):
    images = np.zeros((n_images, 1, 2, 2), dtype=np.uint8)
    labels = np.arange(n_images)  # the label is the image's index
    one = BatchStream(images, labels, np.arange(n_images), batch_size=8, augment=None, seed=3)
    ranks = [BatchStream(images, labels, np.arange(n_images), batch_size=8, augment=None,
                         seed=3, rank=r, world_size=2) for r in range(2)]
    assert len(ranks[0]) == len(ranks[1]) == len(one)  # equal lengths, the same steps
    for epoch in range(2):
        for (_, whole), *parts in zip(one.epoch(epoch), *(s.epoch(epoch) for s in ranks),
                                      strict=True):
            shards = [labels for _, labels in parts]
            assert all(len(s) == len(whole) // 2 for s in shards)  # global batch / world
            together = set(torch.cat(shards).tolist())
            if len(whole) % 2:  # fewer images than the batch: the odd one is dropped
                assert together < set(whole.tolist()) and len(together) == len(whole) - 1
            else:
                assert together == set(whole.tolist())


def test_a_global_batch_the_world_cannot_share_is_refused():
    images, labels, _ = _tiny()
    with pytest.raises(ValueError, match="global batch 63 is not divisible by the world "
                                         "size 2"):
        BatchStream(images, labels, np.arange(96), batch_size=63, augment=None,
                    world_size=2)


# --- two ranks against one process ---------------------------------------------------------

def test_two_ranks_train_exactly_like_one_process_when_batch_norm_is_frozen():
    # linear probe without augmentation: nothing depends on which rank saw an image, so
    # averaging the two half-batch gradients is the one-process gradient (float rounding)
    images, labels, splits = _tiny()
    params = FinetuneParams(init="scratch", strategy="linear_probe", epochs=2, batch_size=32,
                            optimizer={"lr": 0.5})
    results = {}
    for world in (1, 2):
        torch.manual_seed(0)
        model = build_model("small_cnn", 3, 1, width=4)
        for module in model.encoder.parameters():
            module.requires_grad_(False)
        run = RuntimeParams(num_threads=2, channels_last=False,
                            distributed={"nproc_per_node": world})
        result, scores = finetune(model, images, labels, splits, SupervisedPolicy(), params,
                                  run, torch.device("cpu"))
        results[world] = model.state_dict(), result.history, scores
    (one, history_one, _), (two, history_two, scores_two) = results[1], results[2]
    assert one.keys() == two.keys()
    for name in one:
        torch.testing.assert_close(two[name], one[name], rtol=1e-5, atol=1e-6, msg=name)
    assert one["head.weight"].abs().sum() > 0
    np.testing.assert_allclose(np.array(history_two["train_loss"]),
                               np.array(history_one["train_loss"]), rtol=1e-5)
    assert scores_two["epochs"] == 2  # rank 0's return value reached this process


def test_two_ranks_with_sync_batchnorm_train_like_one_process():
    # batch norm in training mode: with runtime.distributed.sync_batchnorm the gloo ranks
    # normalise with the global batch's moments (GlobalBatchNorm on the CPU), so weights,
    # running statistics and losses follow one process; without it they do not
    images, labels, splits = _tiny()
    params = FinetuneParams(init="scratch", epochs=2, batch_size=32, optimizer={"lr": 0.2})
    states = {}
    for world, sync in ((1, False), (2, True), (2, False)):
        torch.manual_seed(0)
        model = build_model("small_cnn", 3, 1, width=4)
        run = RuntimeParams(num_threads=2, channels_last=False, distributed={
            "nproc_per_node": world, "sync_batchnorm": sync})
        result, _ = finetune(model, images, labels, splits, SupervisedPolicy(), params, run,
                             torch.device("cpu"))
        states[world, sync] = model.state_dict(), result.history["train_loss"]
    (one, loss_one), (synced, loss_synced) = states[1, False], states[2, True]
    assert any("running_var" in name for name in one)
    for name in one:
        torch.testing.assert_close(synced[name], one[name], rtol=1e-4, atol=1e-5, msg=name)
    np.testing.assert_allclose(loss_synced, loss_one, rtol=1e-4)
    unsynced, _ = states[2, False]
    assert not torch.allclose(unsynced["head.weight"], one["head.weight"], atol=1e-3)


def probe(model: torch.nn.Module, *, device: torch.device) -> dict:
    """A job that reports what a rank has imported and sees (run by `launch`)."""
    import torch.distributed as dist  # noqa: PLC0415
    seen = {"rank": dist.get_rank(), "world": dist.get_world_size(),
            "threads": torch.get_num_threads(), "device": str(device),
            "kedro_session": "kedro.framework.session" in sys.modules,
            "mlflow": "mlflow" in sys.modules, "run_id": os.environ.get("MLFLOW_RUN_ID")}
    everyone = [None] * dist.get_world_size()
    dist.all_gather_object(everyone, seen)
    return everyone


def stop_the_launcher(model: torch.nn.Module, *, device: torch.device) -> None:
    """A job whose rank 0 sends SIGTERM to the process that launched it, as `timeout`
    or `docker stop` would, while the ranks train."""
    import torch.distributed as dist  # noqa: PLC0415
    if dist.get_rank() == 0:
        os.kill(os.getppid(), signal.SIGTERM)
    time.sleep(60)


SIGNALS = [getattr(signal, name) for name in ("SIGTERM", "SIGINT", "SIGHUP", "SIGQUIT")]


def test_a_signal_during_a_launch_stops_it_as_ctrl_c_and_leaves_the_handlers_as_they_were():
    before = [signal.getsignal(sig) for sig in SIGNALS]
    with pytest.raises(KeyboardInterrupt, match="SIGTERM"):  # the run: KILLED, not FAILED
        launch(RuntimeParams(num_threads=2, distributed=TWO), stop_the_launcher,
               torch.nn.Linear(2, 2))
    assert [signal.getsignal(sig) for sig in SIGNALS] == before


def test_ranks_import_neither_kedro_nor_mlflow_and_share_the_cores(monkeypatch):
    monkeypatch.setenv("MLFLOW_RUN_ID", "0123456789abcdef")  # as inside a tracked run
    model = torch.nn.Linear(2, 2)
    before = [signal.getsignal(sig) for sig in SIGNALS]
    ranks = launch(RuntimeParams(num_threads=2, distributed=TWO), probe, model)
    # the launcher's own handlers are gone: a later Ctrl-C or SIGTERM ends the run KILLED
    assert [signal.getsignal(sig) for sig in SIGNALS] == before
    assert [r["rank"] for r in ranks] == [0, 1]
    for seen in ranks:
        assert seen["world"] == 2 and seen["threads"] == 1 and seen["device"] == "cpu"
        assert not seen["kedro_session"] and not seen["mlflow"] and seen["run_id"] is None


def test_a_rank_imports_neither_torchvision_nor_scikit_learn_to_fine_tune():
    """What a rank (a fresh process) imports to fine-tune without label mixing: each of
    these libraries costs about a second per rank, paid at every launch."""
    code = ("import sys, model_lifecycle.training.distributed_worker, "
            "model_lifecycle.training.finetune, model_lifecycle.models.registry\n"
            "from model_lifecycle.augment.augmenter import LabelMixer\n"
            "from model_lifecycle.augment.config import SupervisedPolicy\n"
            "assert not LabelMixer(SupervisedPolicy(), 10).enabled\n"
            "print(sorted(m for m in ('torchvision', 'sklearn', 'kedro', 'mlflow') "
            "if m in sys.modules))\n")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                            check=False)
    assert result.returncode == 0, result.stderr[-1500:]
    assert result.stdout.strip() == "[]"


# --- inside kedro run ----------------------------------------------------------------------

def _versions(work: Path) -> list[Path]:
    return sorted((work / "data" / "06_models" / "finetuned_model.pt").iterdir())


def _runs(work: Path):
    import mlflow  # noqa: PLC0415
    mlflow.set_tracking_uri(f"sqlite:///{work / 'mlflow.db'}")
    return mlflow.search_runs(experiment_names=["model-lifecycle"], order_by=["start_time ASC"])


def test_finetune_on_two_ranks_inside_kedro_run(project, caplog, monkeypatch):
    project(["ingest", "augment"], DATA)
    project(["finetune"], {**DATA, "finetune": FINETUNE, "runtime": {"num_threads": 2}})
    caplog.set_level("INFO", logger="model_lifecycle")
    project(["finetune"], {**DATA, "finetune": FINETUNE,
                           "runtime": {"num_threads": 2, "distributed": TWO}})
    assert "finetune: 2 ranks (gloo)" in caplog.text
    assert "weights identical on every rank" in caplog.text
    runs = _runs(project.work)
    assert len(runs) == 3  # ingest+augment, and one run per finetune: none from the ranks
    one, two = runs.iloc[-2], runs.iloc[-1]
    assert two["status"] == "FINISHED"
    assert two["params.runtime.distributed.nproc_per_node"] == "2"
    assert len(_versions(project.work)) == 2  # one model version per kedro run
    # Same global batch, same steps: within 6 points on the digits' val split after 4
    # epochs (augmentations differ, and batch norm sees half batches on each rank)
    assert abs(two["metrics.finetune.val_accuracy"]
               - one["metrics.finetune.val_accuracy"]) <= 0.06
    # (exact agreement where nothing depends on the rank: the linear-probe test above)

    # a rank that dies mid-epoch: one sentence, nothing saved, earlier versions intact
    monkeypatch.setenv(FAULT_ENV, "1:3")
    with pytest.raises(LifecycleError, match=r"^Distributed training stopped: rank 1 failed "
                       r"\(Signal 9 \(SIGKILL\).*\); nothing of this node was saved"):
        project(["finetune"], {**DATA, "finetune": FINETUNE,
                               "runtime": {"num_threads": 2, "distributed": TWO}})
    versions = _versions(project.work)
    assert len(versions) == 2
    from kedro.config import OmegaConfigLoader  # noqa: PLC0415
    from kedro.io import AbstractDataset  # noqa: PLC0415
    catalog = OmegaConfigLoader(str(project.work / "conf"), base_env="base",
                                default_run_env="local")["catalog"]["finetuned_model"]
    dataset = AbstractDataset.from_config("finetuned_model", {
        **catalog, "filepath": str(project.work / catalog["filepath"])})
    assert dataset.load().head.out_features == 10
    assert _runs(project.work).iloc[-1]["status"] == "FAILED"


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def test_two_machines_on_localhost(project, caplog):
    """node 0 is `kedro run`, node 1 the worker command another machine would run."""
    project(["ingest", "augment"], DATA)
    endpoint = f"127.0.0.1:{_free_port()}"
    other = subprocess.Popen(
        [sys.executable, "-m", "model_lifecycle.training.distributed_worker", "--nnodes", "2",
         "--node-rank", "1", "--rdzv-endpoint", endpoint],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        caplog.set_level("INFO", logger="model_lifecycle")
        project(["finetune"], {**DATA, "finetune": FINETUNE, "runtime": {
            "num_threads": 2, "distributed": {"nnodes": 2, "rdzv_endpoint": endpoint}}})
        output, _ = other.communicate(timeout=120)
    finally:
        other.kill()
    assert other.returncode == 0, output[-3000:]
    assert "finetune: 2 ranks (gloo)" in caplog.text
    assert _runs(project.work).iloc[-1]["status"] == "FINISHED"
    assert len(_versions(project.work)) == 1


# --- refused before anything runs ----------------------------------------------------------

def test_more_ranks_than_processors_are_refused(project):
    too_many = processors() + 1
    with pytest.raises(LifecycleError, match=rf"runtime.distributed.nproc_per_node is "
                       rf"{too_many}, but this machine has {processors()} processors: set it "
                       rf"to {processors()} or fewer"):
        project(["ingest", "augment", "finetune"], {
            **DATA, "finetune": FINETUNE,
            "runtime": {"device": "cpu", "distributed": {"nproc_per_node": too_many}}})
    assert not (project.work / "data" / "03_primary" / "images.npz").exists()


@pytest.mark.parametrize(("params", "message"), [
    ({"finetune": {**FINETUNE, "batch_size": 63}},
     r"finetune.batch_size 63 is the global batch and must be divisible by the world size 2 "
     r"\(runtime.distributed\): set it to 62"),
    ({"finetune": {**FINETUNE, "budget_seconds": 60}},
     r"finetune.budget_seconds cannot be used with runtime.distributed"),
    ({"compress": {"distill": {"batch_size": 9}}},
     r"compress.distill.batch_size 9 is the global batch"),
])
def test_settings_a_distributed_run_cannot_train_with_are_refused(project, params, message):
    runtime = {"device": "cpu", "distributed": TWO} | params.pop("runtime", {})
    with pytest.raises(LifecycleError, match=message):
        project(["finetune", "compress"], {**DATA, **params, "runtime": runtime})


@pytest.mark.parametrize(("given", "message"), [
    ({"nnodes": 2}, "nnodes 2 needs rdzv_endpoint as host:port of node 0"),
    ({"nnodes": 2, "rdzv_endpoint": "node0"}, "not 'node0'"),
    ({"nnodes": 2, "rdzv_endpoint": "node0:99999"}, "port 1-65535"),
    ({"node_rank": 1}, "node_rank 1 needs nnodes above it"),
])
def test_a_bad_multi_machine_setting_is_one_sentence(given, message):
    with pytest.raises(ValueError, match=message):
        DistributedParams(**given)


def test_kedro_run_is_node_0(project):
    with pytest.raises(LifecycleError, match=r"runtime.distributed.node_rank is 1, but "
                       r"`kedro run` is node 0 of the job: run `python -m "
                       r"model_lifecycle.training.distributed_worker --node-rank 1"):
        project(["finetune"], {**DATA, "runtime": {"distributed": {
            "nnodes": 2, "node_rank": 1, "rdzv_endpoint": "127.0.0.1:29500"}}})


def test_a_killed_rank_is_named_rather_than_the_peer_its_death_broke(tmp_path):
    # rank 1 killed from outside; rank 0 wrote its error (a broken gloo connection) and
    # was then stopped by the launcher's SIGTERM, all before the launcher stamped rank 1
    error_file = tmp_path / "error.json"
    error_file.write_text(json.dumps({"message": "RuntimeError: Connection reset by peer",
                                      "timestamp": 1}))
    missing = str(tmp_path / "none.json")
    failures = {0: ProcessFailure(0, 100, -15, str(error_file)),
                1: ProcessFailure(1, 101, -9, missing)}
    exc = ChildFailedError("worker", failures)
    assert exc.get_first_failure()[0] == 0
    rank, failure = _root_failure(exc)
    assert rank == 1 and "SIGKILL" in failure.message
    # rank 1 raised; rank 0, blocked on it, was stopped by the launcher: rank 1
    exc = ChildFailedError("worker", {0: ProcessFailure(0, 100, -15, missing),
                                      1: ProcessFailure(1, 101, 1, str(error_file))})
    assert _root_failure(exc)[0] == 1


def test_a_rank_stopped_while_it_writes_its_error_leaves_no_half_file(tmp_path, monkeypatch):
    """The launcher stops the other ranks (SIGTERM) once one has failed; a rank stopped
    while it writes its error file must not leave an empty one, on which the launcher
    would fail with a JSONDecodeError instead of naming the failed rank."""
    from model_lifecycle.training import distributed_worker  # noqa: PLC0415

    error_file = tmp_path / "error.json"
    monkeypatch.setenv("TORCHELASTIC_ERROR_FILE", str(error_file))
    handler = distributed_worker._AtomicErrorHandler()

    def stopped(*args, **kwargs):
        raise KeyboardInterrupt  # the signal, arriving mid-write

    with monkeypatch.context() as patch:
        patch.setattr(json, "dump", stopped)
        with pytest.raises(KeyboardInterrupt):
            handler.record_exception(RuntimeError("Connection reset by peer"))
    assert not error_file.exists()
    assert ProcessFailure(0, 100, -15, str(error_file)).message  # the launcher reads it
    handler.record_exception(RuntimeError("Connection reset by peer"))  # whole, this time
    failure = ProcessFailure(0, 100, 1, str(error_file))
    assert failure.message["message"] == "RuntimeError: Connection reset by peer"
    assert [p.name for p in tmp_path.iterdir()] == ["error.json"]


def test_machines_that_never_join_stop_the_node_in_one_sentence(caplog):
    """nnodes 2 with no second machine: node 0 says what it waits for and how long, then
    stops with one sentence after runtime.distributed.rdzv_timeout (it waited 15
    minutes, then failed with torch's DistStoreError)."""
    import logging  # noqa: PLC0415

    from model_lifecycle.training.distributed import run_ranks  # noqa: PLC0415

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    config = DistributedParams(nnodes=2, rdzv_endpoint=f"127.0.0.1:{port}", rdzv_timeout=2)
    started = time.monotonic()
    with caplog.at_level(logging.INFO), pytest.raises(LifecycleError, match=(
            rf"^Distributed training stopped: not every machine joined at 127.0.0.1:{port} "
            r"within 2 s \(runtime.distributed.rdzv_timeout; .*\): start the worker command")):
        run_ranks(config, [])
    assert time.monotonic() - started < 60
    assert f"waiting up to 2 s (runtime.distributed.rdzv_timeout) for all 2 machines to " \
           f"join at 127.0.0.1:{port}" in caplog.text
    # the command it names carries every setting the other machines must match
    from model_lifecycle.training.distributed import worker_command  # noqa: PLC0415

    assert worker_command(config.model_copy(update={"backend": "gloo", "max_restarts": 2})
                          ) == ("python -m model_lifecycle.training.distributed_worker "
                                "--nnodes 2 --node-rank <its rank> --nproc-per-node 1 "
                                f"--rdzv-endpoint 127.0.0.1:{port} --backend gloo "
                                "--max-restarts 2")
