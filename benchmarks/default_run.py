"""The default lifecycle end to end: ``kedro run`` on the embedded digits, from an empty
project (ingest → augment → pretrain → finetune → compress → explain → evaluate →
register).

Runs it as a user would (a scratch copy of the project outside the repository, a fresh
MLflow store each time), three times, and records wall time, the peak resident memory
of the process, each node's seconds (the run's ``seconds.<node>`` metrics; what is left
of the wall time is spent outside the nodes: start-up, imports, the MLflow store, the
catalog, closing the run), the champion and the evaluation report of the last run.
Goal: ≤ 90 s on 2 cores.

    python -m benchmarks.default_run [--repeats 3]
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
from pathlib import Path

import mlflow
import pandas as pd

from benchmarks.common import (
    DEFAULT_WORK,
    KEDRO_ENV,
    run_measured,
    scratch_project,
    write_result,
)


def _latest(project: Path, relative: str) -> Path:
    return sorted((project / relative).glob(f"*/{Path(relative).name}"))[-1]


def _node_seconds(project: Path) -> dict[str, float]:
    """The ``seconds.<node>`` metrics of the project's one run."""
    client = mlflow.MlflowClient(tracking_uri=f"sqlite:///{project / 'mlflow.db'}")
    experiment = client.get_experiment_by_name("model-lifecycle")
    (run,) = client.search_runs([experiment.experiment_id])
    return {key.removeprefix("seconds."): value for key, value in run.data.metrics.items()
            if key.startswith("seconds.")}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--work", type=Path, default=DEFAULT_WORK / "default_run")
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    env = KEDRO_ENV
    walls, peaks, nodes = [], [], []
    for i in range(args.repeats):
        project = scratch_project(args.work)  # empty data and MLflow store each time
        wall, peak = run_measured([sys.executable, "-m", "kedro", "run"], cwd=project,
                                  env=env)
        walls.append(wall)
        peaks.append(peak)
        nodes.append(_node_seconds(project))
        print(f"run {i + 1}: {wall:.1f} s, peak {peak / 2**30:.2f} GiB", flush=True)
    summary = json.loads(_latest(project, "data/08_reporting/registry_summary.json")
                         .read_text())
    report = pd.read_csv(_latest(project, "data/08_reporting/evaluation_report.csv"))
    path = write_result("default_run", {
        "command": "kedro run",
        "wall_s": [round(w, 1) for w in walls],
        "median_wall_s": round(statistics.median(walls), 1),
        "peak_rss_gib": round(max(peaks) / 2**30, 2),
        "node_seconds_median": dict(sorted(
            ((name, round(statistics.median(run[name] for run in nodes), 1))
             for name in nodes[0]), key=lambda item: -item[1])),
        "startup_seconds_median": round(statistics.median(
            wall - sum(run.values()) for wall, run in zip(walls, nodes, strict=True)), 1),
        "champion": summary["decision"],
        "evaluation_report": report.round(5).to_dict(orient="records"),
        "goal": "<= 90 s on 2 cores, ending with a registered champion",
    })
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
