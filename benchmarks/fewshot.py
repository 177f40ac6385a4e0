"""Few-shot accuracy on five CIFAR-10 classes no encoder ever trained on: 5-way 1- and
5-shot episodes answered by Prototypical Networks on the features of a SimCLR-pretrained,
a supervised (base classes), a random and an episodically meta-trained encoder.

The parameters are ``conf/cifar10``'s, read by Kedro's config loader; the benchmark
holds out ``NOVEL`` (``fewshot.novel_classes``) and gives each training stage
``--minutes`` of training (``budget_seconds``), then calls the nodes' own functions in the
order ``kedro run --env=cifar10 --pipelines=__default__,fewshot`` would (ingest's hold-out
and splits, augment's policy, pretrain, finetune, fewshot), without compress, evaluate
and register, which the comparison does not read.

    python -m benchmarks.fewshot [--minutes 3]
    python -m benchmarks.fewshot --bounds
    python -m benchmarks.fewshot --novel automobile cat dog horse truck --label alternate

``--novel`` holds out other classes (default: the five animals other than the bird, so
the base classes are vehicles and birds); ``--label`` writes
``results/fewshot_<label>.json`` instead.

``--bounds`` trains nothing: the same episodes of the novel classes answered by the same
head on raw pixels (scaled to unit length: the floor any encoder should beat) and on the
encoder of the model ``benchmarks.cifar10_budget`` trained on all ten classes, the novel
ones included (not a few-shot result: what the head and the episodes give when the
features know the classes); results/fewshot_bounds.json.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np
from torch import nn

from benchmarks.common import (
    DEFAULT_WORK,
    SHARED_CIFAR,
    cifar_jpeg_folder,
    conf_parameters,
    latest_version,
    show_progress,
    write_result,
)
from model_lifecycle.augment.config import AugmentParams, resolve_policy
from model_lifecycle.data.config import IngestParams
from model_lifecycle.data.episodes import seeded_episodes
from model_lifecycle.data.holdout import hold_out_classes
from model_lifecycle.data.sources import load_source
from model_lifecycle.data.splits import make_splits
from model_lifecycle.evaluation.fewshot import encoder_features, fewshot_rows
from model_lifecycle.io import ImageSetDataset, TorchModelDataset
from model_lifecycle.params import parse_params
from model_lifecycle.pipelines.fewshot.nodes import evaluate_fewshot, meta_train_encoder
from model_lifecycle.pipelines.finetune.nodes import finetune_model
from model_lifecycle.pipelines.pretrain.nodes import pretrain_encoder
from model_lifecycle.training.config import RuntimeParams
from model_lifecycle.training.fewshot_config import FewshotParams

NOVEL = ["cat", "deer", "dog", "frog", "horse"]  # the base classes: vehicles and birds
GOALS = ("CIFAR-10, 5 novel classes never trained on: 5-way 5-shot >= 70% and 1-shot >= 50% "
         "with the best encoder after <= 15 minutes of training on 2 cores")


def read_images(folder: Path, ingest: dict, work: Path):
    """Every CIFAR-10 training image: the CIFAR-10 benchmark's ingested array when it
    exists (the same conversion), else the JPEG folder decoded as ingest does."""
    project = work / "cifar10" / "project"
    try:
        path = latest_version(project, "data/03_primary/images.npz")
        data = ImageSetDataset(filepath=str(path)).load()
        if len(data.class_names) == 10:
            return data, str(path)
    except IndexError:
        pass
    return load_source(IngestParams(**{**ingest, "path": str(folder)})), str(folder)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--archive", type=Path, default=SHARED_CIFAR)
    parser.add_argument("--work", type=Path, default=DEFAULT_WORK)
    parser.add_argument("--minutes", type=float, default=3.0,
                        help="training budget of each of pretrain, finetune, meta-train")
    parser.add_argument("--novel", nargs="+", default=NOVEL,
                        help="the held-out classes (fewshot.novel_classes)")
    parser.add_argument("--label", default="",
                        help="writes fewshot_<label>.json instead of fewshot.json")
    parser.add_argument("--bounds", action="store_true",
                        help="no training: the head on raw pixels and on an encoder that "
                             "saw all ten classes (see the module's docstring)")
    args = parser.parse_args()
    show_progress()
    params = conf_parameters("cifar10")
    budget = 60 * args.minutes
    fewshot = {**params["fewshot"], "novel_classes": args.novel,
               "meta_train": {**params["fewshot"]["meta_train"], "budget_seconds": budget}}
    pretrain = {**params["pretrain"], "budget_seconds": budget}
    finetune = {**params["finetune"], "budget_seconds": budget}
    runtime = params["runtime"]

    tic = time.perf_counter()
    data, source = read_images(cifar_jpeg_folder(args.archive, args.work),
                               params["ingest"], args.work)
    ingest = IngestParams(**{**params["ingest"], "path": source})
    images, novel = hold_out_classes(data, args.novel)  # what ingest_images does
    splits = make_splits(images, ingest.splits, labeled_fraction=ingest.labeled_fraction,
                         seed=ingest.seed)
    policy = resolve_policy(AugmentParams(**params["augment"]))
    ingest_seconds = time.perf_counter() - tic
    if args.bounds:
        bounds(novel, fewshot, runtime, args.work, args.label)
        return

    seconds = {}
    tic = time.perf_counter()
    pretrained, pretrain_history = pretrain_encoder(images, splits, policy, pretrain, runtime)
    seconds["pretrain"] = time.perf_counter() - tic
    tic = time.perf_counter()
    finetuned, finetune_history = finetune_model(images, splits, policy, None, finetune,
                                                 runtime)
    seconds["finetune"] = time.perf_counter() - tic
    tic = time.perf_counter()
    meta, meta_history = meta_train_encoder(images, splits, novel, policy, pretrained,
                                            finetuned, fewshot, runtime)
    seconds["meta_train"] = time.perf_counter() - tic
    tic = time.perf_counter()
    report, _, _ = evaluate_fewshot(images, novel, pretrained, finetuned, meta, fewshot,
                                    runtime)
    seconds["fewshot_evaluation"] = time.perf_counter() - tic

    def last(history: dict, key: str) -> float:
        return round(float(history[key][-1]["value"]), 4)

    best = report.loc[report.groupby("shot")["accuracy"].idxmax()]
    result = {
        "goals": GOALS,
        "command": " ".join(["python -m benchmarks.fewshot", *sys.argv[1:]]),
        "environment": "cifar10 (conf/cifar10/parameters_fewshot.yml and the recipe's "
                       "other groups), budgets from --minutes",
        "images": source,
        "novel_classes": args.novel,
        "base_classes": list(images.class_names),
        "novel_images": len(novel),
        "base_split_sizes": {k: int(len(v)) for k, v in splits.items()
                             if isinstance(v, np.ndarray) and v.ndim == 1},
        "budget_seconds_per_stage": budget,
        "seconds": {k: round(v, 1) for k, v in seconds.items()},
        "ingest_seconds": round(ingest_seconds, 1),
        "training_minutes_best_encoder": {
            "pretrained": round(seconds["pretrain"] / 60, 2),
            "supervised": round(seconds["finetune"] / 60, 2),
            "meta_trained": round(seconds["meta_train"] / 60, 2), "scratch": 0.0},
        "base_class_quality": {
            "pretrain_knn_accuracy": last(pretrain_history, "knn_accuracy"),
            "finetune_test_accuracy": last(finetune_history, "test_accuracy"),
            "meta_train_episodes": last(meta_history, "episodes"),
            "meta_train_val_5way_accuracy": last(meta_history, "val_accuracy")
            if "val_accuracy" in meta_history else None},
        "feature_norm": fewshot["feature_norm"],
        "report": report.round(4).to_dict(orient="records"),
        "best": {f"{int(r.shot)}-shot": {"encoder": r.encoder,
                                         "accuracy": round(r.accuracy, 4),
                                         "ci95": round(r.ci95, 4)}
                 for r in best.itertuples()},
    }
    print(write_result("fewshot" + (f"_{args.label}" if args.label else ""), result))
    print(report.to_string(index=False))


def bounds(novel, fewshot: dict, runtime: dict, work: Path, label: str) -> None:
    """The floor and the ceiling of the few-shot evaluation (see the module's docstring):
    the episodes ``evaluate_fewshot`` draws (same seed, way, shots and queries)."""
    project = work / "cifar10" / "project"
    model_file = latest_version(project, "data/06_models/finetuned_model.pt")
    all_classes = TorchModelDataset(filepath=str(model_file)).load()
    config = parse_params(FewshotParams, fewshot, "fewshot")
    seed = parse_params(RuntimeParams, runtime, "runtime").seed
    episodes = seeded_episodes(novel.labels, way=config.way, shots=config.shots,
                               queries=config.queries, episodes=config.episodes, seed=seed)
    l2 = config.feature_norm == "l2"
    rows = (fewshot_rows("pixels", encoder_features(nn.Flatten(), novel.images, l2=True),
                         episodes)
            + fewshot_rows("trained on all ten classes",
                           encoder_features(all_classes.encoder, novel.images, l2=l2),
                           episodes))
    for row in rows:
        print(row, flush=True)
    print(write_result("fewshot_bounds" + (f"_{label}" if label else ""), {
        "command": " ".join(["python -m benchmarks.fewshot", *sys.argv[1:]]),
        "what": "the few-shot evaluation's episodes of the novel classes answered by the "
                "Prototypical Networks head on raw pixels (unit length) and on the encoder "
                "of a model trained on all ten classes, the novel ones included (most of "
                "these images were in its training split): a floor and an optimistic "
                "ceiling, not few-shot results",
        "novel_classes": fewshot["novel_classes"], "novel_images": len(novel),
        "all_classes_model": str(model_file.relative_to(project)),
        "feature_norm": config.feature_norm,
        "report": [{k: round(v, 4) if isinstance(v, float) else v for k, v in row.items()}
                   for row in rows]}))


if __name__ == "__main__":
    main()
