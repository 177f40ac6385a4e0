"""The shared tracking server (``make server``: MLflow on PostgreSQL, artifacts proxied
through the server) on a throwaway cluster in a temporary folder.

A tiny lifecycle logs to it with ``--env=server`` and is read back through MLflow's
client (run, metrics, registered versions, the champion, an artifact downloaded through
the proxy) and straight from PostgreSQL; stopping stops both processes and starting
again finds every run. A server that does not answer, or whose database is down, stops
a run before anything runs, with one sentence.

Without PostgreSQL's server binaries the server tests skip, except in CI (``CI`` set, as
``.ci/run`` does), where they fail.
"""

from __future__ import annotations

import http.server
import json
import os
import shutil
import socket
import stat
import tempfile
import threading
from collections.abc import Iterator
from pathlib import Path

import mlflow
import pytest

from model_lifecycle.errors import LifecycleError
from model_lifecycle.hooks import _create_experiment
from model_lifecycle.tracking_server import TrackingServer, main, postgres_bindir, probe
from tests.conftest import project_runner, scratch_project
from tests.pipelines.test_pretrain_finetune_run import TINY

# the tiny lifecycle, with the robustness checks of evaluate cut to one corruption
RUN = {**TINY, "evaluate": {**TINY["evaluate"],
                            "robustness": {"corruptions": ["gaussian_noise"], "images": 50,
                                           "severities": [1]},
                            "adversarial": {"images": 20, "steps": 2}}}

NAME = EXPERIMENT = "model-lifecycle"
DEFAULT_URI = "http://127.0.0.1:5005"  # conf/server/mlflow.yml


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _server_project(work: Path, uri: str) -> Path:
    """A scratch project whose ``server`` environment points at ``uri`` (and no local
    store: nothing may write one)."""
    scratch_project(work, store=False)
    conf = work / "conf" / "server" / "mlflow.yml"
    text = conf.read_text()
    assert text.count(DEFAULT_URI) == 2  # tracking and registry
    conf.write_text(text.replace(DEFAULT_URI, uri))
    return work


@pytest.fixture(scope="module")
def server() -> Iterator[TrackingServer]:
    """A started server (fresh cluster) in a temporary folder, stopped and removed after
    the module. The folder is world-enterable: as root, PostgreSQL runs as `postgres`."""
    if postgres_bindir() is None:
        message = ("the tracking server tests need PostgreSQL's server binaries "
                   "(apt-get install postgresql)")
        if os.environ.get("CI"):
            pytest.fail(f"{message}; in CI they must run, not skip", pytrace=False)
        pytest.skip(message)
    folder = Path(tempfile.mkdtemp(prefix="tracking-server-"))
    folder.chmod(0o755)
    tracking = TrackingServer(folder / "server", port=_free_port(), pg_port=_free_port(),
                              workers=1)
    try:
        tracking.start()
        yield tracking
    finally:
        tracking.stop()
        shutil.rmtree(folder, ignore_errors=True)


@pytest.fixture(scope="module")
def logged(server: TrackingServer, tmp_path_factory: pytest.TempPathFactory) -> dict:
    """The tiny default lifecycle, run once with ``--env=server`` against ``server``."""
    work = _server_project(tmp_path_factory.mktemp("server-run") / "work", server.uri)
    with pytest.MonkeyPatch.context() as patch:
        patch.chdir(work)
        project_runner(work)(None, RUN, env="server")
    client = mlflow.MlflowClient(tracking_uri=server.uri, registry_uri=server.uri)
    [run] = client.search_runs([client.get_experiment_by_name(EXPERIMENT).experiment_id])
    return {"work": work, "client": client, "run": run}


def test_a_lifecycle_logs_to_the_server_and_reads_back(server, logged):
    client, run = logged["client"], logged["run"]
    assert run.info.status == "FINISHED"
    assert run.data.params["finetune.epochs"] == "3"
    history = client.get_metric_history(run.info.run_id, "finetune.train_loss")
    assert [m.step for m in history] == [0, 1, 2]  # one point per epoch
    # every point the client reads is one row of PostgreSQL's metrics table, no more
    points = sum(len(client.get_metric_history(run.info.run_id, key))
                 for key in run.data.metrics)
    with server.connect() as connection, connection.cursor() as cursor:
        cursor.execute("SELECT count(*) FROM metrics WHERE run_uuid = %s",
                       (run.info.run_id,))
        assert cursor.fetchone()[0] == points > len(run.data.metrics)


def test_artifacts_go_through_the_server_to_its_folder(server, logged, tmp_path):
    client, run, work = logged["client"], logged["run"], logged["work"]
    assert run.info.artifact_uri.startswith("mlflow-artifacts:/")  # proxied
    downloaded = client.download_artifacts(run.info.run_id, "ingest/dataset_report.json",
                                           str(tmp_path))
    local = work / "data" / "08_reporting" / "dataset_report.json"
    assert json.loads(Path(downloaded).read_text()) == json.loads(local.read_text())
    on_server = list(server.artifacts.rglob("dataset_report.json"))
    assert len(on_server) == 1 and on_server[0].read_bytes() == Path(downloaded).read_bytes()


def test_the_models_are_registered_on_the_server(server, logged, tmp_path):
    client, run = logged["client"], logged["run"]
    versions = client.search_model_versions(f"name='{NAME}'")
    assert {v.run_id for v in versions} == {run.info.run_id}
    assert {"finetuned", "pruned", "quantized", "distilled"} <= {v.tags["variant"]
                                                                 for v in versions}
    champion = client.get_model_version_by_alias(NAME, "champion")
    before = mlflow.get_tracking_uri(), mlflow.get_registry_uri()
    mlflow.set_tracking_uri(server.uri)
    mlflow.set_registry_uri(server.uri)
    try:  # what `mlflow models serve -m models:/model-lifecycle@champion` fetches
        model = Path(mlflow.artifacts.download_artifacts(f"models:/{NAME}@champion",
                                                         dst_path=str(tmp_path)))
    finally:
        mlflow.set_tracking_uri(before[0])
        mlflow.set_registry_uri(before[1])
    assert (model / "MLmodel").is_file() and (model / "model_code.py").exists()
    assert champion.version in {v.version for v in versions}


def test_stop_stops_both_and_a_new_start_finds_every_run(server, logged):
    run_id = logged["run"].info.run_id
    pid = json.loads(server.pid_file.read_text())["pid"]
    assert server.stop() is True
    assert server.status() == {"postgres": False, "mlflow": False}
    assert server.stop() is False  # `make server-stop` says there was nothing to stop
    assert not (server.cluster / "postmaster.pid").exists()  # PostgreSQL shut down
    with pytest.raises(ProcessLookupError):
        os.killpg(pid, 0)  # no MLflow server process (nor worker) is left
    assert probe(server.uri).kind == "down"
    assert main(["status", "--folder", str(server.folder), "--port", str(server.port),
                 "--pg-port", str(server.pg_port)]) == 3
    server.start()
    assert server.status() == {"postgres": True, "mlflow": True}
    client = mlflow.MlflowClient(tracking_uri=server.uri)
    assert client.get_run(run_id).info.status == "FINISHED"


def test_starting_a_running_server_again_keeps_it_and_other_ports_are_refused(server):
    server.start()  # already running: nothing changes
    pid = json.loads(server.pid_file.read_text())["pid"]
    other = _free_port()
    with pytest.raises(LifecycleError, match=(
            rf"^The MLflow server of {server.folder} already runs on port {server.port}, "
            rf"not {other}: stop it first \(make server-stop\), or start with --port "
            rf"{server.port}\.$")):
        TrackingServer(server.folder, port=other, pg_port=server.pg_port,
                       workers=server.workers).start()
    with pytest.raises(LifecycleError, match=rf"^PostgreSQL of {server.folder} already runs "
                                             rf"on port {server.pg_port}, not {other}"):
        TrackingServer(server.folder, port=server.port, pg_port=other,
                       workers=server.workers).start()
    assert json.loads(server.pid_file.read_text())["pid"] == pid
    assert probe(server.uri) is None


def test_two_runs_creating_the_experiment_at_once_both_go_on(server, monkeypatch):
    """kedro-mlflow's get-or-create of the experiment fails the slower of two runs that
    start together on a fresh server; the project creates it first, tolerating that."""
    tracking = {"experiment": {"name": "created-at-once"}}
    _create_experiment(server.uri, tracking)
    # the other run: it looked before the first one created the experiment
    monkeypatch.setattr(mlflow.MlflowClient, "get_experiment_by_name", lambda self, name: None)
    _create_experiment(server.uri, tracking)
    monkeypatch.undo()
    client = mlflow.MlflowClient(tracking_uri=server.uri)
    assert client.get_experiment_by_name("created-at-once").lifecycle_stage == "active"


@pytest.mark.parametrize("env", ["server", "local"])
def test_a_server_that_does_not_answer_stops_the_run_before_anything_runs(
        env, tmp_path, monkeypatch):
    uri = f"http://127.0.0.1:{_free_port()}"  # nothing listens there
    work = _server_project(tmp_path / "work", uri)
    if env == "local":
        (work / "conf" / "local" / "mlflow.yml").write_text(
            f"server:\n  mlflow_tracking_uri: {uri}\n  mlflow_registry_uri: {uri}\n")
        fix = (r"start it \(`make server` starts the project's own\), or set "
               r"server.mlflow_tracking_uri in conf/local/mlflow.yml to a running server "
               r"or to sqlite:///mlflow.db\.")
    else:
        fix = (r"start it with `make server`, or run without --env=server to log to the "
               r"embedded SQLite store\.")
    monkeypatch.chdir(work)
    with pytest.raises(LifecycleError, match=(
            rf"^MLflow tracking server {uri} \(server.mlflow_tracking_uri in "
            rf"conf/{env}/mlflow.yml\) does not answer \(Connection refused\): {fix}$")):
        project_runner(work)(None, TINY, env=env)
    assert not any(p.is_file() for p in (work / "data").rglob("*"))  # ingest never ran
    assert not (work / "mlflow.db").exists()


def test_an_address_where_no_mlflow_server_answers_stops_the_run(tmp_path, monkeypatch):
    class NotMlflow(http.server.BaseHTTPRequestHandler):
        def do_GET(self):  # noqa: N802  (http.server's name)
            self.send_error(404)

        def log_message(self, *args):
            pass

    other = http.server.HTTPServer(("127.0.0.1", 0), NotMlflow)
    threading.Thread(target=other.serve_forever, daemon=True).start()
    uri = f"http://127.0.0.1:{other.server_port}"
    work = _server_project(tmp_path / "work", uri)
    monkeypatch.chdir(work)
    try:
        with pytest.raises(LifecycleError, match=(
                rf"^MLflow tracking server {uri} \(server.mlflow_tracking_uri in "
                r"conf/server/mlflow.yml\) answers as no MLflow tracking server does "
                r"\(HTTP 404 for .*/api/2.0/mlflow/experiments/search\): check the address "
                r"in server.mlflow_tracking_uri in conf/server/mlflow.yml\.$")):
            project_runner(work)(["ingest"], TINY, env="server")
    finally:
        other.shutdown()


def test_a_server_whose_database_is_down_stops_the_run(server, tmp_path, monkeypatch,
                                                       capsys):
    work = _server_project(tmp_path / "work", server.uri)
    monkeypatch.chdir(work)
    server._pg_ctl(postgres_bindir(), "stop", "-w", "-m", "fast", failure="no stop")
    try:
        with pytest.raises(LifecycleError, match=(
                rf"^MLflow tracking server {server.uri} \(server.mlflow_tracking_uri in "
                r"conf/server/mlflow.yml\) answers but cannot read its backend store "
                r"\(HTTP 5\d\d\): check its database; .*`make server`")):
            project_runner(work)(["ingest"], TINY, env="server")
        # `status` says the server runs but cannot read its store (not "stopped")
        assert main(["status", "--folder", str(server.folder), "--pg-port",
                     str(server.pg_port)]) == 3
        said = capsys.readouterr().out
        assert f"MLflow server ({server.uri}): running, answers but cannot read its " \
               "backend store (HTTP 5" in said
        assert "PostgreSQL" in said and ": stopped;" in said
    finally:
        server.start()  # PostgreSQL again; the MLflow server was never down
    assert probe(server.uri) is None
    assert not any(p.is_file() for p in (work / "data").rglob("*"))  # ingest never ran


def test_the_postgres_binaries_are_found_where_debian_puts_them(tmp_path, monkeypatch):
    def fake_bin(version: str, names=("initdb", "pg_ctl", "postgres")) -> Path:
        folder = tmp_path / version / "bin"
        folder.mkdir(parents=True)
        for name in names:
            (folder / name).write_text("#!/bin/sh\n")
            (folder / name).chmod(stat.S_IRWXU)
        return folder

    # pg_config from libpq-dev (no server next to it) and several Debian versions
    client_only = fake_bin("client", names=("psql",))
    pg_config = tmp_path / "pg_config"
    pg_config.write_text(f"#!/bin/sh\necho {client_only}\n")
    pg_config.chmod(stat.S_IRWXU)
    versions = [str(fake_bin(v)) for v in ("9.6", "15")] + [str(fake_bin("16", ("psql",)))]
    monkeypatch.setattr("shutil.which", lambda name: str(pg_config)
                        if name == "pg_config" else None)
    monkeypatch.setattr("glob.glob", lambda pattern: versions)
    assert postgres_bindir() == tmp_path / "15" / "bin"  # the newest with a server
    monkeypatch.setattr("glob.glob", lambda pattern: [])
    assert postgres_bindir() is None


def test_bad_settings_are_one_sentence(tmp_path):
    with pytest.raises(LifecycleError, match=r"^--port 80 is no usable port: choose one "
                                             r"between 1024 and 65535\.$"):
        TrackingServer(tmp_path, port=80)
    deep = tmp_path / ("x" * 120)
    if postgres_bindir() is not None:
        with pytest.raises(LifecycleError, match=r"too deep for PostgreSQL's socket .* "
                                                 r"choose a shorter --folder\.$"):
            TrackingServer(deep).start()
        assert not deep.exists()


def test_the_server_environment_names_the_default_address(tmp_path):
    """`make server` on its default port needs no edit of conf/server/mlflow.yml; on
    another, its message quotes what the file names (read here)."""
    from pathlib import Path  # noqa: PLC0415

    from model_lifecycle.tracking_server import DEFAULT_PORT, _server_env_uri  # noqa: PLC0415

    conf = Path(__file__).resolve().parents[2] / "conf" / "server" / "mlflow.yml"
    assert _server_env_uri(conf) == f"http://127.0.0.1:{DEFAULT_PORT}"
    other = tmp_path / "mlflow.yml"
    other.write_text("server:\n  mlflow_tracking_uri: http://127.0.0.1:5015\n")
    assert _server_env_uri(other) == "http://127.0.0.1:5015"
    assert _server_env_uri(tmp_path / "missing.yml") is None


def test_workers_a_killed_server_left_are_stopped(tmp_path):
    """`kill -9` of the server's parent leaves its uvicorn workers answering on its port:
    `make server-stop` ends them (they are the recorded process group), and the port is
    free again for `make server`."""
    import subprocess  # noqa: PLC0415
    import sys  # noqa: PLC0415
    import time  # noqa: PLC0415

    port = _free_port()
    worker = ("import socket, time; s = socket.socket(); "
              f"s.bind(('127.0.0.1', {port})); s.listen(); time.sleep(600)")
    # a parent (its own process group, as the server's) that starts a worker and dies
    parent = subprocess.Popen(
        [sys.executable, "-c", "import subprocess, sys; subprocess.Popen([sys.executable, "
         f"'-c', {worker!r}, 'mlflow-worker'])", "mlflow"], start_new_session=True)
    parent.wait()
    tracking = TrackingServer(tmp_path / "server", port=port)
    tracking.folder.mkdir()
    tracking.pid_file.write_text(json.dumps({"pid": parent.pid, "port": port}))
    deadline = time.monotonic() + 30
    while not _taken(port) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert _taken(port)
    assert tracking.status()["mlflow"] is False  # its parent is gone
    assert tracking.stop() is True  # something of it was running
    with pytest.raises(ProcessLookupError):
        os.killpg(parent.pid, 0)  # the worker is gone too
    assert not _taken(port) and not tracking.pid_file.exists()


def _taken(port: int) -> bool:
    from model_lifecycle import ports  # noqa: PLC0415

    return ports.taken("127.0.0.1", port)


def test_a_running_server_is_not_changed_by_other_settings(server):
    """`make server ARGS='--host 0.0.0.0'` (or other workers) while it runs: one
    sentence, and the running server is left as it is (not stopped, not said to have
    started with the new setting); `status` without --port asks the server that runs."""
    pid = json.loads(server.pid_file.read_text())["pid"]
    with pytest.raises(LifecycleError, match=(
            rf"^The MLflow server of {server.folder} already runs with --host 127.0.0.1, "
            rf"not 0.0.0.0: stop it first \(make server-stop\)")):
        TrackingServer(server.folder, port=server.port, pg_port=server.pg_port,
                       host="0.0.0.0", workers=server.workers).start()
    with pytest.raises(LifecycleError, match=r"already runs with --workers 1, not 3"):
        TrackingServer(server.folder, port=server.port, pg_port=server.pg_port,
                       workers=3).start()
    assert json.loads(server.pid_file.read_text())["pid"] == pid
    assert probe(server.uri) is None
    assert main(["status", "--folder", str(server.folder), "--pg-port",
                 str(server.pg_port)]) == 0  # the default --port is not the one it runs on
    # `make server` without those options while it runs: the settings it runs with
    assert main(["start", "--folder", str(server.folder), "--port", str(server.port),
                 "--pg-port", str(server.pg_port)]) == 0
    assert main(["start", "--folder", str(server.folder), "--pg-port",
                 str(server.pg_port)]) == 0  # its port, too
    assert json.loads(server.pid_file.read_text())["pid"] == pid


def test_a_dead_servers_settings_are_not_followed(tmp_path):
    """After a crash or a reboot the pid file stays: a plain `make server` takes the
    defaults (127.0.0.1), not the dead server's --host 0.0.0.0."""
    import argparse  # noqa: PLC0415

    from model_lifecycle.tracking_server import DEFAULT_PORT, _server_for  # noqa: PLC0415

    folder = tmp_path / "server"
    folder.mkdir()
    (folder / "mlflow.pid").write_text(json.dumps(
        {"pid": 2 ** 22 + 7, "port": 5123, "host": "0.0.0.0", "workers": 8,
         "allowed_hosts": "team.example"}))  # a process id no process has
    args = argparse.Namespace(folder=folder, port=None, pg_port=5434, host=None,
                              workers=None, allowed_hosts=None)
    server = _server_for(args)
    assert server.pid_file == folder / "mlflow.pid"
    assert (server.port, server.host, server.workers, server.allowed_hosts) == (
        DEFAULT_PORT, "127.0.0.1", 2, None)
