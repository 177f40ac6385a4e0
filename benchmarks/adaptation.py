"""Test-time adaptation on CIFAR-10 under the generated corruptions: mean error of the
fine-tuned model as it is, with batch-norm statistics of the test stream (bn) and with
TENT, the seconds each corruption takes, and a batch-size sweep of bn and TENT. The
library functions the ``adapt`` node calls, on the ``cifar10`` environment's
``adapt`` parameters (read through Kedro's config loader).

The model, images and splits are those ``benchmarks.cifar10_budget`` left in its
scratch project (run it first).

    python -m benchmarks.adaptation [--images 2000] [--sweep-images 1000]

``--select-lr 0.001 0.003 … [--select-steps 1 2 …] [--select-optimizer adam sgd]
[--select-layers all encoder.stages.0,encoder.stages.1]`` chooses TENT's learning rate
(and updates per batch, optimizer, and the layers it updates) instead: TENT alone
at each setting on the same corruptions of a seeded sample of the *training* images
(the test split is never looked at; results/adaptation_lr.json). The setting with the
lowest mean error is the one to write into ``conf/cifar10/parameters_adapt.yml``.
"""

from __future__ import annotations

import argparse
import itertools
import time
from pathlib import Path

import torch

from benchmarks.common import (
    DEFAULT_WORK,
    conf_parameters,
    latest_version,
    show_progress,
    write_result,
)
from model_lifecycle.data.splits import checked_splits
from model_lifecycle.io import ImageSetDataset, NpzDataset, TorchModelDataset
from model_lifecycle.params import parse_params
from model_lifecycle.training.tta_config import AdaptParams
from model_lifecycle.training.tta_streams import adaptation_sweep, corruption_streams

GOALS = ("CIFAR-10, 12 corruptions at severity 5: bn cuts the mean error >= 30% relative "
         "to the unadapted model; TENT at least 1 point below bn; each corruption (every "
         "method) < 1 minute on 2 cores. TENT paper, WRN-28-10 on CIFAR-10-C severity 5: "
         "43.5% -> 20.4% (BN) -> 18.6% (TENT)")
SWEEP = (16, 64, 256)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--work", type=Path, default=DEFAULT_WORK)
    parser.add_argument("--images", type=int, default=2000, help="test images per stream")
    parser.add_argument("--sweep-images", type=int, default=1000,
                        help="test images per stream in the batch-size sweep")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--select-lr", type=float, nargs="+", default=None,
                        help="TENT learning rates to compare on corrupted training images")
    parser.add_argument("--select-steps", type=int, nargs="+", default=None,
                        help="with --select-lr: TENT updates per batch to compare too "
                             "(default: the environment's adapt.steps)")
    parser.add_argument("--select-optimizer", nargs="+", default=None,
                        choices=["adam", "sgd"],
                        help="with --select-lr: TENT optimizers to compare too "
                             "(default: the environment's adapt.optimizer)")
    parser.add_argument("--select-layers", nargs="+", default=None,
                        help="with --select-lr: adapt.layers settings to compare too, each "
                             "`all` or comma-separated module names, e.g. "
                             "encoder.stages.0,encoder.stages.1 (default: the environment's)")
    args = parser.parse_args()
    show_progress()
    torch.set_num_threads(args.threads)
    project = args.work / "cifar10" / "project"
    if not list(project.glob("data/06_models/finetuned_model.pt/*")):
        raise SystemExit(f"{project} holds no fine-tuned model: run python -m "
                         "benchmarks.cifar10_budget first")
    raw = conf_parameters("cifar10")["adapt"]
    params = parse_params(AdaptParams, {**raw, "sample": args.images}, "adapt")
    model_file = latest_version(project, "data/06_models/finetuned_model.pt")
    model = TorchModelDataset(filepath=str(model_file)).load()
    images = ImageSetDataset(filepath=str(latest_version(
        project, "data/03_primary/images.npz"))).load()
    splits = NpzDataset(filepath=str(latest_version(
        project, "data/05_model_input/splits.npz"))).load()
    split = checked_splits(images, splits)
    test = split["test"]
    if args.select_lr:
        select_lr(model, images, split["train_labeled"], params, args)
        return

    tic = time.perf_counter()
    streams = list(corruption_streams(images.images, images.labels, test, params))
    generation = time.perf_counter() - tic
    report, _ = adaptation_sweep(model, streams, params)
    means = report.groupby("method", sort=False).error_after.mean()
    seconds = report.groupby("corruption", sort=False).seconds.sum()
    errors = report.pivot_table(index="corruption", columns="method", values="error_after",
                                sort=False)
    print(errors.round(3).to_string(), flush=True)

    sweep = {}
    few = [s.__class__(s.corruption, s.severity, s.images[:args.sweep_images],
                       s.labels[:args.sweep_images]) for s in streams]
    for size in SWEEP:
        swept = params.model_copy(update={"batch_size": size, "methods": ("bn", "tent")})
        rows, _ = adaptation_sweep(model, few, swept)
        sweep[size] = {method: {"mean_error": round(group.error_after.mean(), 4),
                                "seconds_per_corruption": round(group.seconds.mean(), 2)}
                       for method, group in rows.groupby("method", sort=False)}
        sweep[size]["none_mean_error"] = round(rows.error_before.mean(), 4)
        print(size, sweep[size], flush=True)

    none, bn, tent = (float(means[m]) for m in ("none", "bn", "tent"))
    result = {
        "command": "python -m benchmarks.adaptation"
                   f" --images {args.images} --sweep-images {args.sweep_images}",
        "goals": GOALS,
        "model": str(model_file.relative_to(project)),
        "parameters": params.model_dump(mode="json"),
        "images_per_stream": len(streams[0].labels),
        "corruptions": len(streams),
        "threads": args.threads,
        "mean_error": {"none": round(none, 4), "bn": round(bn, 4), "tent": round(tent, 4)},
        "bn_relative_reduction": round(1 - bn / none, 4),
        "tent_points_below_bn": round(100 * (bn - tent), 2),
        "error_per_corruption": errors.round(4).to_dict(orient="index"),
        "seconds_per_corruption_all_methods": seconds.round(2).to_dict(),
        "max_seconds_per_corruption": round(float(seconds.max()), 2),
        "seconds_per_method": report.groupby("method", sort=False).seconds.mean()
        .round(2).to_dict(),
        "corruption_generation_seconds": round(generation, 1),
        "batch_size_sweep": {"images_per_stream": len(few[0].labels), **sweep},
        "goals_met": {"bn_cuts_30_percent": 1 - bn / none >= 0.30,
                      "tent_one_point_below_bn": 100 * (bn - tent) >= 1.0,
                      "each_corruption_under_a_minute": float(seconds.max()) < 60},
    }
    print(f"wrote {write_result('adaptation', result)}")


def select_lr(model, images, train, params: AdaptParams, args) -> None:
    """TENT at each of ``args.select_lr`` (times each of ``args.select_steps`` and
    ``args.select_optimizer``) on corrupted training images (the model has seen them
    clean, not corrupted): the setting to configure, chosen without the test split."""
    streams = list(corruption_streams(images.images, images.labels, train, params))
    steps = args.select_steps or [params.steps]
    optimizers = args.select_optimizer or [params.optimizer]
    layer_sets = ([None if s == "all" else tuple(s.split(",")) for s in args.select_layers]
                  if args.select_layers else [params.layers])
    rows, settings = {}, {}
    for optimizer, lr, count, layers in itertools.product(optimizers, args.select_lr, steps,
                                                          layer_sets):
        key = str(lr) if not (args.select_steps or args.select_optimizer
                              or args.select_layers) else ", ".join(
            [*([optimizer] if args.select_optimizer else []), f"lr {lr}",
             *([f"steps {count}"] if args.select_steps else []),
             *([f"layers {','.join(layers) if layers else 'all'}"]
               if args.select_layers else [])])
        tent = params.model_copy(update={"lr": lr, "steps": count, "optimizer": optimizer,
                                         "layers": layers, "methods": ("bn", "tent")})
        report, _ = adaptation_sweep(model, streams, tent)
        means = report.groupby("method", sort=False).error_after.mean()
        rows[key] = {"bn": round(float(means["bn"]), 4),
                     "tent": round(float(means["tent"]), 4),
                     "none": round(float(report.error_before.mean()), 4)}
        settings[key] = (lr, count, optimizer, layers)
        print(key, rows[key], flush=True)
    best = min(rows, key=lambda key: rows[key]["tent"])
    result = {
        "command": "python -m benchmarks.adaptation --select-lr "
                   + " ".join(str(lr) for lr in args.select_lr)
                   + (" --select-steps " + " ".join(map(str, args.select_steps))
                      if args.select_steps else "")
                   + (" --select-optimizer " + " ".join(args.select_optimizer)
                      if args.select_optimizer else "")
                   + (" --select-layers " + " ".join(args.select_layers)
                      if args.select_layers else "")
                   + f" --images {args.images}",
        "what": f"TENT alone at each setting on {len(streams)} streams (the corruptions at "
                f"severity {', '.join(map(str, params.severities))}) of "
                f"{len(streams[0].labels):,} seeded training images; the test split is "
                "not used",
        "parameters": params.model_dump(mode="json"),
        "mean_error_per_lr": rows,
        "best_lr": float(settings[best][0]),
        "best_steps": settings[best][1],
        "best_optimizer": settings[best][2],
        "best_layers": list(settings[best][3]) if settings[best][3] else None,
    }
    print(f"wrote {write_result('adaptation_lr', result)}")


if __name__ == "__main__":
    main()
