"""A 10,000-image folder through the whole lifecycle with the ``ten_minutes``
environment: ``kedro run --env=ten_minutes --params ingest.path=<folder>`` from an empty
project, timed as a user would see it, at 5% of the labels (the environment's) and,
with ``--labeled-fractions 0.05 1.0``, at all of them.

The folder is 1,000 images per class drawn (seed 0) from the CIFAR-10 training JPEGs,
copied outside the repository as ``<root>/<class>/<image>.jpg``.

    python -m benchmarks.folder_ten_minutes [--labeled-fractions 0.05 1.0]
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import pandas as pd

from benchmarks.common import (
    DEFAULT_WORK,
    KEDRO_ENV,
    SHARED_CIFAR,
    cifar_jpeg_folder,
    class_subset,
    latest_run,
    latest_version,
    run_measured,
    scratch_project,
    write_result,
)

PER_CLASS = 1000


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--archive", type=Path, default=SHARED_CIFAR)
    parser.add_argument("--work", type=Path, default=DEFAULT_WORK)
    parser.add_argument("--labeled-fractions", type=float, nargs="+", default=[0.05])
    args = parser.parse_args()
    folder = class_subset(cifar_jpeg_folder(args.archive, args.work),
                          args.work / "cifar10-10k", PER_CLASS)
    runs = []
    for fraction in args.labeled_fractions:
        project = scratch_project(args.work / "ten_minutes")
        command = [sys.executable, "-m", "kedro", "run", "--env=ten_minutes", "--params",
                   f"ingest.path={folder},ingest.labeled_fraction={fraction}"]
        wall, peak = run_measured(command, cwd=project, env=KEDRO_ENV)
        run = latest_run(project)
        report = pd.read_csv(latest_version(project, "data/08_reporting/evaluation_report.csv"))
        summary = latest_version(project, "data/08_reporting/registry_summary.json")
        row = {"labeled_fraction": fraction, "wall_s": round(wall, 1),
               "peak_rss_gib": round(peak / 2**30, 2),
               "seconds": {stage: round(run[f"metrics.{stage}.train_seconds"], 1)
                           for stage in ("pretrain", "finetune", "distilled")},
               "knn_accuracy": round(run["metrics.pretrain.knn_accuracy"], 4),
               "test_accuracy": {r["variant"]: round(r["accuracy"], 4)
                                 for r in report.to_dict(orient="records")},
               "champion": json.loads(summary.read_text())["decision"]["champion"]}
        runs.append(row)
        print(row, flush=True)
    path = write_result("folder_ten_minutes", {
        "command": "python -m benchmarks.folder_ten_minutes --labeled-fractions "
                   + " ".join(map(str, args.labeled_fractions)),
        "pipeline": "kedro run --env=ten_minutes --params ingest.path=<folder>",
        "images": 10 * PER_CLASS, "runs": runs,
        "goal": "the whole lifecycle on a 10,000-image folder in <= 10 minutes on 2 cores"})
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
