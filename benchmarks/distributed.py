"""Two gloo ranks against one process on the same global batch (``runtime.distributed``,
docs/distributed.md), through ``kedro run`` as a user would, on the embedded digits and
on a CIFAR-10 folder.

For each data set, one scratch project: ``kedro run --env=<env> --pipelines=ingest,augment``
once, then for every seed ``kedro run --env=<env> --pipelines=finetune --params
runtime.seed=<s>,runtime.distributed.nproc_per_node=<1|2>`` (one process and two ranks
in turn, so that other work on the machine weighs on both alike). The recipes are the
environments ``conf/distributed_digits`` (every digit label, ``small_cnn`` from scratch,
15 epochs, global batch 64) and ``conf/distributed_cifar10`` (conf/cifar10's ``fast_cnn``
recipe with 10 fixed epochs, global batch 128, on 1,500 training JPEGs per class at 16 px,
drawn with seed 0 and copied outside the repository).

Recorded for every run: test and val accuracy, the training seconds the run logs
(``finetune.train_seconds``: the training loop, on rank 0 for two ranks), the
``kedro run``'s wall time, the MLflow runs and ``finetuned_model`` versions it added
(one each), and for two ranks the launcher's log line (world size, backend, launch
seconds, the SHA-256 of the weights every rank ended with) with the digest of the saved
version. Summary per data set: the mean test accuracy of two ranks minus that of one
process over the seeds (goal: within 0.5 point), and the scaling efficiency
``t_1proc / (2 * t_2ranks)`` of the training seconds (1.0: two ranks halve the time).

    python -m benchmarks.distributed [--datasets digits cifar10] [--seeds 0 1 2]
"""

from __future__ import annotations

import argparse
import os
import re
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

from benchmarks.common import (
    DEFAULT_WORK,
    KEDRO_ENV,
    SHARED_CIFAR,
    cifar_jpeg_folder,
    class_subset,
    conf_parameters,
    latest_version,
    scratch_project,
    write_result,
)
from model_lifecycle.training.distributed import state_digest

ENVS = {"digits": "distributed_digits", "cifar10": "distributed_cifar10"}
# CIFAR-10 training JPEGs per class: 15,000 images, 9,000 of them the test split. Two
# models that disagree on a fifth of the images differ by sqrt(0.2 / n) in accuracy from
# the choice of test images alone: 1.4 points at n = 1,000, 0.5 at 9,000.
PER_CLASS = 1500
MODEL = "data/06_models/finetuned_model.pt"
# distributed.launch's line: "finetune: 2 ranks (gloo) in 12.3 s, weights identical on
# every rank (sha256 0123456789ab…)"
LAUNCH_LINE = re.compile(r"finetune: (\d+) ranks \((\w+)\) in ([\d.]+) s, weights identical "
                         r"on every rank \(sha256 ([0-9a-f]+)")
GOAL = ("two gloo ranks within 0.5 point of one process in test accuracy (mean of 3 "
        "seeds), on the same global batch and fixed epochs; identical weights on every "
        "rank; one MLflow run and one model version per kedro run")


def mlflow_runs(project: Path):
    """Every MLflow run of the project's store, oldest first."""
    import mlflow  # noqa: PLC0415

    mlflow.set_tracking_uri(f"sqlite:///{project}/mlflow.db")
    return mlflow.search_runs(experiment_names=["model-lifecycle"],
                              order_by=["start_time ASC"])


def model_versions(project: Path) -> int:
    return len(list((project / MODEL).glob("*/finetuned_model.pt")))


def kedro(project: Path, *args: str) -> tuple[float, str]:
    """``kedro run <args>`` in ``project``; its wall seconds and its output (also
    streamed)."""
    command = [sys.executable, "-m", "kedro", "run", *args]
    print("$", " ".join(command[2:]), flush=True)
    # wide lines: the launcher's log line must not be wrapped by Kedro's rich handler
    env = {**os.environ, **KEDRO_ENV, "COLUMNS": "400"}
    tic = time.perf_counter()
    process = subprocess.Popen(command, cwd=project, env=env, stdout=subprocess.PIPE,
                               stderr=subprocess.STDOUT, text=True)
    lines = []
    for line in process.stdout:
        lines.append(line)
        print(line, end="", flush=True)
    if process.wait() != 0:
        raise SystemExit(f"{' '.join(command)} failed")
    return time.perf_counter() - tic, "".join(lines)


def finetune_run(project: Path, env: str, seed: int, world: int) -> dict[str, Any]:
    """One ``kedro run --pipelines=finetune`` on ``world`` processes, and what it left."""
    runs_before, versions_before = len(mlflow_runs(project)), model_versions(project)
    wall, output = kedro(project, f"--env={env}", "--pipelines=finetune", "--params",
                         f"runtime.seed={seed},runtime.distributed.nproc_per_node={world}")
    runs = mlflow_runs(project)
    run = runs.iloc[-1]
    saved = torch.load(latest_version(project, MODEL), weights_only=True)["state_dict"]
    row = {
        "seed": seed, "processes": world,
        "test_accuracy": round(float(run["metrics.finetune.test_accuracy"]), 4),
        "val_accuracy": round(float(run["metrics.finetune.val_accuracy"]), 4),
        "epochs": float(run["metrics.finetune.epochs"]),
        "train_seconds": round(float(run["metrics.finetune.train_seconds"]), 1),
        "kedro_run_seconds": round(wall, 1),
        "mlflow_status": run["status"],
        "logged_nproc_per_node": int(run["params.runtime.distributed.nproc_per_node"]),
        "mlflow_runs_added": len(runs) - runs_before,
        "model_versions_added": model_versions(project) - versions_before,
        "saved_model_sha256": state_digest(saved),
    }
    launched = LAUNCH_LINE.search(output)
    if world > 1:
        if launched is None:
            raise SystemExit("the launcher's 'weights identical on every rank' line is "
                             "missing from the kedro run output")
        ranks, backend, seconds, digest = launched.groups()
        row["launcher"] = {"line": launched.group(0) + "…)", "ranks": int(ranks),
                           "backend": backend, "launch_seconds": float(seconds),
                           "rank_weights_sha256_prefix": digest}
        # the version Kedro saved holds the weights every rank ended with
        row["saved_model_is_ranks_weights"] = row["saved_model_sha256"].startswith(digest)
    elif launched is not None:
        raise SystemExit("one process launched ranks")
    print({k: v for k, v in row.items() if k != "launcher"}, flush=True)
    return row


def summarise(rows: list[dict[str, Any]]) -> dict[str, Any]:
    """Accuracy difference (two ranks - one process) and scaling efficiency."""
    one = {r["seed"]: r for r in rows if r["processes"] == 1}
    two = {r["seed"]: r for r in rows if r["processes"] == 2}
    seeds = sorted(one)
    diffs = [100 * (two[s]["test_accuracy"] - one[s]["test_accuracy"]) for s in seeds]
    t_one = statistics.mean(one[s]["train_seconds"] for s in seeds)
    t_two = statistics.mean(two[s]["train_seconds"] for s in seeds)
    w_one = statistics.mean(one[s]["kedro_run_seconds"] for s in seeds)
    w_two = statistics.mean(two[s]["kedro_run_seconds"] for s in seeds)
    mean_diff = statistics.mean(diffs)
    return {
        "test_accuracy_one_process": [one[s]["test_accuracy"] for s in seeds],
        "test_accuracy_two_ranks": [two[s]["test_accuracy"] for s in seeds],
        "mean_test_accuracy_one_process": round(statistics.mean(
            one[s]["test_accuracy"] for s in seeds), 4),
        "mean_test_accuracy_two_ranks": round(statistics.mean(
            two[s]["test_accuracy"] for s in seeds), 4),
        "difference_points_per_seed": [round(d, 2) for d in diffs],
        "mean_difference_points": round(mean_diff, 2),
        "within_0_5_point": abs(mean_diff) <= 0.5,
        # seed-to-seed spread of one process: the noise a difference is measured against
        "std_test_accuracy_one_process_points": round(100 * statistics.stdev(
            one[s]["test_accuracy"] for s in seeds), 2) if len(seeds) > 1 else None,
        "std_difference_points": round(statistics.stdev(diffs), 2) if len(seeds) > 1
        else None,
        "weights_identical_on_every_rank": all("launcher" in two[s] for s in seeds),
        "saved_model_is_ranks_weights": all(two[s]["saved_model_is_ranks_weights"]
                                            for s in seeds),
        "one_mlflow_run_per_kedro_run": all(r["mlflow_runs_added"] == 1 for r in rows),
        "one_model_version_per_kedro_run": all(r["model_versions_added"] == 1 for r in rows),
        "mean_train_seconds_one_process": round(t_one, 1),
        "mean_train_seconds_two_ranks": round(t_two, 1),
        "scaling_efficiency_train": round(t_one / (2 * t_two), 3),
        "mean_kedro_run_seconds_one_process": round(w_one, 1),
        "mean_kedro_run_seconds_two_ranks": round(w_two, 1),
        "scaling_efficiency_kedro_run": round(w_one / (2 * w_two), 3),
    }


def bench(name: str, seeds: list[int], work: Path, archive: Path) -> dict[str, Any]:
    env = ENVS[name]
    project = scratch_project(work / f"distributed_{name}")
    ingest = ["--env=" + env, "--pipelines=ingest,augment"]
    if name == "cifar10":
        folder = class_subset(cifar_jpeg_folder(archive, work),
                              work / f"cifar10-{PER_CLASS}-per-class", PER_CLASS)
        ingest += ["--params", f"ingest.path={folder}"]
    kedro(project, *ingest)
    rows = [finetune_run(project, env, seed, world) for seed in seeds for world in (1, 2)]
    params = conf_parameters(env)
    splits = np.load(latest_version(project, "data/05_model_input/splits.npz"))
    return {
        "environment": env,
        "commands": ["kedro run " + " ".join(ingest).replace(str(work), "<work>"),
                     f"kedro run --env={env} --pipelines=finetune --params "
                     "runtime.seed=<seed>,runtime.distributed.nproc_per_node=<1|2>"],
        "images": {split: len(splits[split]) for split in splits.files
                   if splits[split].ndim == 1},
        "recipe": {k: params["finetune"][k] for k in (
            "init", "arch", "arch_kwargs", "epochs", "batch_size", "optimizer", "schedule",
            "flip_tta", "shift_tta", "whiten_stem")},
        "image_size": params["ingest"]["image_size"],
        "summary": summarise(rows), "runs": rows,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--datasets", nargs="+", choices=list(ENVS), default=list(ENVS))
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--archive", type=Path, default=SHARED_CIFAR)
    parser.add_argument("--work", type=Path, default=DEFAULT_WORK)
    parser.add_argument("--omp-wait-policy", choices=["PASSIVE", "ACTIVE", "unset"],
                        default="PASSIVE",
                        help="OMP_WAIT_POLICY of every kedro run: on cores that other work "
                             "keeps busy, OpenMP threads that spin while they wait slow a "
                             "two-thread process several-fold; one-thread ranks never wait")
    args = parser.parse_args()
    if args.omp_wait_policy != "unset":
        os.environ["OMP_WAIT_POLICY"] = args.omp_wait_policy
    tic = time.perf_counter()
    results = {name: bench(name, args.seeds, args.work, args.archive)
               for name in args.datasets}
    for name, result in results.items():
        print(name, result["summary"], flush=True)
    path = write_result("distributed", {
        "command": "nice -n 10 python -m benchmarks.distributed --datasets "
                   + " ".join(args.datasets) + " --seeds " + " ".join(map(str, args.seeds))
                   + f" --omp-wait-policy {args.omp_wait_policy}",
        "omp_wait_policy": args.omp_wait_policy,
        "goal": GOAL,
        "scaling_efficiency": "t_1proc / (2 * t_2ranks): finetune.train_seconds (the "
                              "training loop; rank 0's for two ranks) and the kedro run's "
                              "wall time (process start, launch and scoring included)",
        "contention": "measured on 2 cores shared with other work (load average above "
                      "the core count): the times and their ratio are indicative; the "
                      "accuracies do not depend on them",
        "total_seconds": round(time.perf_counter() - tic, 1),
        **results})
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
