"""Transfer across data sets: an encoder pretrained with SimCLR on the CIFAR-10 images
(labels unused; ``parameters_source.yml``) fine-tuned on the digits with 2%, 5% and 10%
of their labels, against the same fine-tuning from scratch and from an encoder
pretrained on the digits themselves (``parameters_pretrain.yml``), 3 seeds each.

Everything is ``kedro run`` of the base environment, as a user would type it:

    kedro run --pipelines=transfer --to-nodes=source.pretrain_encoder \
        --params source.ingest.source=image_folder,source.ingest.path=<cifar jpg folder>
    kedro run --pipelines=ingest,augment,pretrain --params ingest.seed=S,runtime.seed=S
    kedro run --pipelines=ingest --params ingest.labeled_fraction=F,ingest.seed=S
    kedro run --pipelines=finetune  --params finetune.init=scratch,runtime.seed=S
    kedro run --pipelines=finetune  --params runtime.seed=S             # digits encoder
    kedro run --pipelines=transfer --nodes=finetune_model --params runtime.seed=S  # CIFAR

A seed sets the split (which images are test, which labels are kept) and the training
order; within a seed the three encoders see the same labeled images and test split.

    python -m benchmarks.transfer [--seeds 0 1 2] [--fractions 0.02 0.05 0.1]
        [--source-budget 600]
"""

from __future__ import annotations

import argparse
import statistics
import time
from pathlib import Path

from benchmarks.common import (
    DEFAULT_WORK,
    SHARED_CIFAR,
    cifar_jpeg_folder,
    kedro_run,
    machine,
    scratch_project,
    write_result,
)

ENCODERS = ("scratch", "digits_simclr", "cifar10_simclr")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--archive", type=Path, default=SHARED_CIFAR)
    parser.add_argument("--work", type=Path, default=DEFAULT_WORK)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--fractions", type=float, nargs="+", default=[0.02, 0.05, 0.1])
    parser.add_argument("--source-budget", type=float, default=None,
                        help="source.pretrain.budget_seconds (default: the configured one)")
    args = parser.parse_args()
    project = scratch_project(args.work / "transfer")
    start = time.perf_counter()

    source = {"source.ingest.source": "image_folder",
              "source.ingest.path": cifar_jpeg_folder(args.archive, args.work)}
    if args.source_budget:
        source["source.pretrain.budget_seconds"] = args.source_budget
    run = kedro_run(project, "--pipelines=transfer", "--to-nodes=source.pretrain_encoder",
                    params=source)
    cifar = {key.removeprefix("metrics.source.pretrain."): run[key]
             for key in ("metrics.source.pretrain.epochs",
                         "metrics.source.pretrain.train_seconds",
                         "metrics.source.pretrain.knn_accuracy") if key in run}

    accuracy: dict[str, dict[str, list[float]]] = {
        str(f): {e: [] for e in ENCODERS} for f in args.fractions}
    for seed in args.seeds:
        split = {"ingest.seed": seed, "runtime.seed": seed}
        # the digits encoder: SimCLR on this seed's training images (labels unused)
        kedro_run(project, "--pipelines=ingest,augment,pretrain", params=split)
        for fraction in args.fractions:
            kedro_run(project, "--pipelines=ingest",
                      params={**split, "ingest.labeled_fraction": fraction})
            runs = {
                "scratch": kedro_run(project, "--pipelines=finetune",
                                     params={**split, "finetune.init": "scratch"}),
                "digits_simclr": kedro_run(project, "--pipelines=finetune", params=split),
                "cifar10_simclr": kedro_run(project, "--pipelines=transfer",
                                            "--nodes=finetune_model", params=split),
            }
            for encoder, record in runs.items():
                accuracy[str(fraction)][encoder].append(
                    float(record["metrics.finetune.test_accuracy"]))
            print(fraction, seed, {e: v[-1] for e, v in accuracy[str(fraction)].items()},
                  flush=True)

    table = {fraction: {encoder: {"mean": round(statistics.mean(values), 4),
                                  "runs": [round(v, 4) for v in values]}
                        for encoder, values in by_encoder.items()}
             for fraction, by_encoder in accuracy.items()}
    path = write_result("transfer", {
        "command": "python -m benchmarks.transfer", "seeds": args.seeds,
        "target": "digits (base environment), 16 px grayscale",
        "source": "CIFAR-10 training JPEGs at 16 px RGB (parameters_source.yml)",
        "cifar10_encoder": cifar, "test_accuracy": table,
        "seconds": round(time.perf_counter() - start), "machine": machine()})
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
