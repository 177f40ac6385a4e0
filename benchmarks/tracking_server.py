"""The shared tracking server (``make server``: MLflow on PostgreSQL, proxied artifacts)
under two runs at once, and the default lifecycle's time against it versus the embedded
SQLite store.

1. Two ``kedro run --env=server`` at once, from two scratch projects, each logging over
   1,000 metric points: the default lifecycle on tiny models with many epochs
   (pretrain 100, finetune 200: the lifecycle logs one point per metric and epoch).
   Each run's process counts the metric points its MLflow client wrote (a counter
   around MLflow's client); the benchmark compares them with the rows of PostgreSQL's
   ``metrics`` table, and checks that both runs finished and registered their models.
2. The default ``kedro run`` (the digits, the project's parameters), alternately on
   SQLite and on the server, ``--repeats`` times each; medians side by side.
   Goal: the server within 20% of SQLite.

    python -m benchmarks.tracking_server [--repeats 3]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import socket
import statistics
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from benchmarks.common import (
    DEFAULT_WORK,
    KEDRO_ENV,
    run_measured,
    scratch_project,
    write_result,
)
from model_lifecycle.tracking_server import TrackingServer

NAME = EXPERIMENT = "model-lifecycle"

# Tiny models, many epochs: ~1,200 metric points per run in a minute or two of CPU.
MANY_POINTS = {
    "ingest.image_size": 8, "ingest.labeled_fraction": 0.3,
    "pretrain.arch_kwargs.width": 4, "pretrain.epochs": 100, "pretrain.batch_size": 128,
    "pretrain.eval_every": 10, "pretrain.hidden_dim": 32, "pretrain.projection_dim": 16,
    "finetune.epochs": 200, "finetune.batch_size": 64,
    "compress.prune.recovery.epochs_per_step": 1, "compress.prune.recovery.final_epochs": 1,
    "compress.prune.structured.steps": 2, "compress.distill.epochs": 2,
    "compress.distill.student_kwargs.width": 1, "compress.quantize.calibration_batches": 2,
    "evaluate.latency.repeats": 3, "evaluate.latency.warmup": 1,
    "evaluate.robustness.images": 100, "evaluate.adversarial.images": 100,
    "evaluate.adversarial.steps": 5,
    "explain.images_per_class": 1, "explain.ig_steps": 8, "explain.curve_steps": 8,
    "runtime.num_threads": 1,  # two runs share the machine
}

# `kedro run` whose MLflow client counts, per run, the metric points it wrote (after
# each call returned) and writes them to $POINTS_FILE at exit: {run_id: {"run": n,
# "model": m}}. A point with a model id (MLflow 3 copies a run's metrics to each model
# it logs) is stored in `logged_model_metrics`, any other in `metrics`.
COUNTING_KEDRO = """
import atexit, collections, inspect, json, os, sys
from mlflow.tracking._tracking_service.client import TrackingServiceClient as Client
points = collections.defaultdict(collections.Counter)
log_metric, log_batch = Client.log_metric, Client.log_batch
signature = inspect.signature(log_metric)
def counted_metric(self, run_id, *args, **kwargs):
    result = log_metric(self, run_id, *args, **kwargs)
    model_id = signature.bind(self, run_id, *args, **kwargs).arguments.get("model_id")
    points[run_id]["model" if model_id else "run"] += 1
    return result
def counted_batch(self, run_id, metrics=(), *args, **kwargs):
    result = log_batch(self, run_id, metrics, *args, **kwargs)
    for metric in metrics:
        points[run_id]["model" if getattr(metric, "model_id", None) else "run"] += 1
    return result
Client.log_metric, Client.log_batch = counted_metric, counted_batch
def write():
    with open(os.environ["POINTS_FILE"], "w") as out:
        json.dump(points, out)
atexit.register(write)
from kedro.framework.cli import main
sys.argv = ["kedro", *sys.argv[1:]]
main()
"""


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _server_project(work: Path, uri: str) -> Path:
    """A scratch project whose ``--env=server`` points at ``uri``."""
    project = scratch_project(work)
    conf = project / "conf" / "server" / "mlflow.yml"
    conf.write_text(conf.read_text().replace("http://127.0.0.1:5005", uri))
    return project


def _params(values: dict[str, Any]) -> str:
    return ",".join(f"{key}={value}" for key, value in values.items())


def concurrent_runs(server: TrackingServer, work: Path) -> dict[str, Any]:
    """Two counted `kedro run --env=server` at once; their points against PostgreSQL's."""
    runs = []
    for name in ("a", "b"):
        project = _server_project(work / f"concurrent_{name}", server.uri)
        points_file = project / "points.json"
        command = [sys.executable, "-c", COUNTING_KEDRO, "run", "--env=server",
                   "--params", _params(MANY_POINTS)]
        log = (project / "kedro.log").open("w")
        start = time.perf_counter()
        process = subprocess.Popen(command, cwd=project, stdout=log, stderr=subprocess.STDOUT,
                                   env={**os.environ, **KEDRO_ENV,
                                        "POINTS_FILE": str(points_file)})
        runs.append({"project": project, "process": process, "start": start, "log": log,
                     "points_file": points_file})
    for run in runs:
        run["returncode"] = run["process"].wait()
        run["wall_s"] = round(time.perf_counter() - run["start"], 1)
        run["log"].close()
    import mlflow  # noqa: PLC0415

    client = mlflow.MlflowClient(tracking_uri=server.uri, registry_uri=server.uri)
    results = []
    with server.connect() as connection, connection.cursor() as cursor:
        for run in runs:
            if run["returncode"] != 0:
                tail = (run["project"] / "kedro.log").read_text()[-3000:]
                raise SystemExit(f"kedro run in {run['project']} failed:\n{tail}")
            [(run_id, logged)] = json.loads(run["points_file"].read_text()).items()
            cursor.execute("SELECT count(*) FROM metrics WHERE run_uuid = %s", (run_id,))
            stored = cursor.fetchone()[0]
            cursor.execute("SELECT count(*) FROM logged_model_metrics WHERE run_id = %s",
                           (run_id,))
            stored_model = cursor.fetchone()[0]
            versions = client.search_model_versions(f"run_id='{run_id}'")
            results.append({
                "run_id": run_id, "wall_s": run["wall_s"],
                "status": client.get_run(run_id).info.status,
                "metric_points_logged": logged.get("run", 0),
                "metric_rows_in_postgres": stored,
                "lost_points": logged.get("run", 0) - stored,
                "model_metric_points_logged": logged.get("model", 0),
                "logged_model_metric_rows_in_postgres": stored_model,
                "registered_versions": sorted(f"{v.name} v{v.version} ({v.tags['variant']})"
                                              for v in versions)})
    return {"runs": results,
            "ok": all(r["status"] == "FINISHED" and r["lost_points"] == 0
                      and r["model_metric_points_logged"]
                      == r["logged_model_metric_rows_in_postgres"]
                      and r["metric_points_logged"] >= 1000 and r["registered_versions"]
                      for r in results)}


def _default_run_points(server: TrackingServer) -> int:
    import mlflow  # noqa: PLC0415

    client = mlflow.MlflowClient(tracking_uri=server.uri)
    experiment = client.get_experiment_by_name(EXPERIMENT)
    [run] = client.search_runs([experiment.experiment_id], order_by=["start_time DESC"],
                               max_results=1)
    with server.connect() as connection, connection.cursor() as cursor:
        cursor.execute("SELECT count(*) FROM metrics WHERE run_uuid = %s", (run.info.run_id,))
        return cursor.fetchone()[0]


def timed_default_runs(server: TrackingServer, work: Path, repeats: int
                       ) -> Iterator[dict[str, Any]]:
    """The default `kedro run`, alternately on SQLite and on the server, from an empty
    project each time; yields the summary so far after each pair."""
    walls: dict[str, list[float]] = {"sqlite": [], "server": []}
    for i in range(repeats):
        for store in ("sqlite", "server"):
            if store == "sqlite":
                project, args = scratch_project(work / "default_sqlite"), []
            else:
                project, args = _server_project(work / "default_server", server.uri), \
                    ["--env=server"]
            wall, _ = run_measured([sys.executable, "-m", "kedro", "run", *args],
                                   cwd=project, env=KEDRO_ENV)
            walls[store].append(round(wall, 1))
            print(f"default run {i + 1} on {store}: {wall:.1f} s", flush=True)
        sqlite, on_server = (statistics.median(walls[s]) for s in ("sqlite", "server"))
        yield {"repeats_done": i + 1, "wall_s": walls,
               "median_wall_s": {"sqlite": sqlite, "server": on_server},
               "server_over_sqlite": round(on_server / sqlite, 3),
               "metric_points_per_run": _default_run_points(server),
               "within_20_percent": on_server <= 1.2 * sqlite}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--work", type=Path, default=DEFAULT_WORK / "tracking_server")
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    args.work.mkdir(parents=True, exist_ok=True)
    args.work.chmod(0o755)  # as root, PostgreSQL runs as `postgres` and must enter it
    shutil.rmtree(args.work / "server", ignore_errors=True)  # a fresh database
    server = TrackingServer(args.work / "server", port=_free_port(), pg_port=_free_port())
    start = time.perf_counter()
    server.start()
    first_start = time.perf_counter() - start
    print(f"server up in {first_start:.1f} s (initdb, migrations)", flush=True)
    result: dict[str, Any] = {
        "command": "python -m benchmarks.tracking_server",
        "server": {"backend": "PostgreSQL (unix socket)", "artifacts": "proxied",
                   "workers": server.workers, "first_start_s": round(first_start, 1)},
        "goal": "two runs at once: no error, no lost metric point, both registered; "
                "default run on the server within 20% of SQLite",
    }
    try:
        result["concurrent_runs"] = {"params": MANY_POINTS, **concurrent_runs(server,
                                                                              args.work)}
        print(json.dumps(result["concurrent_runs"]["runs"], indent=2), flush=True)
        path = write_result("tracking_server", result)
        for summary in timed_default_runs(server, args.work, args.repeats):
            result["default_run"] = summary
            path = write_result("tracking_server", result)  # what is done so far
    finally:
        server.stop()
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
