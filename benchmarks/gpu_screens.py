"""Accuracy screens on one CUDA GPU: many short CIFAR-10 runs side by side, one process
each, to rank options before a CPU benchmark spends its hours on one of them.

- ``--plan recipe``: the budget recipe (``cifar10_budget.OURS``) for 13.03 epochs at
  several seeds and settings (learning rate, batch-norm bias learning rate, label
  smoothing): does a setting move the accuracy beyond the seed-to-seed spread?
- ``--plan prune``: structured pruning of the budget model (``cifar10_model.pt``, saved
  by the budget run) to 2× fewer MACs with the compression benchmark's recovery (3
  epochs per milestone + 24), varying importance, ``round_to``, ``keep_stem`` and the
  recovery learning rate.

Accuracy only: the runs share the GPU, so their times say nothing. Float32 (cuDNN's
TF32 allowed for the recipe runs, not for pruning). Results: ``results/gpu_screens.json``.

    python -m benchmarks.gpu_screens --plan recipe|prune [--workers 12]
    python -m benchmarks.gpu_screens --plan prune --device cpu --smoke   # a dry run
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import statistics
from pathlib import Path

import numpy as np
import torch

from benchmarks.cifar10_budget import OURS, cifar_split, recipe_policy, train_recipe
from benchmarks.common import DEFAULT_WORK, SHARED_CIFAR, cifar_jpeg_folder, write_result

RECIPE = [  # (overrides of OURS, seeds)
    ({}, range(6)), ({"lr": 0.25}, range(6)), ({"norm_bias_lr_scale": 8.0}, range(3)),
    ({"lr": 0.25, "norm_bias_lr_scale": 8.0}, range(6)), ({"label_smoothing": 0.3}, range(3)),
]
PRUNE = [  # options of prune_structured / the recovery
    {"importance": "magnitude", "round_to": 8},
    {"importance": "magnitude", "round_to": 4},
    {"importance": "taylor", "round_to": 8},
    {"importance": "magnitude", "round_to": 8, "keep_stem": True},
    {"importance": "taylor", "round_to": 8, "keep_stem": True},
    {"importance": "magnitude", "round_to": 8, "lr": 0.05},
]


def _data(work: Path):
    images = np.load(work / "screen_images.npy")
    meta = np.load(work / "screen_meta.npz")
    splits = {"train_labeled": meta["train"], "train_unlabeled": meta["train"][:0],
              "val": meta["val"], "test": meta["test"]}
    return images, meta["labels"], splits


def recipe_job(job: dict) -> dict:
    from model_lifecycle.training.config import RuntimeParams  # noqa: PLC0415 - in the worker
    from model_lifecycle.training.finetune import accuracy  # noqa: PLC0415

    torch.backends.cudnn.allow_tf32 = True
    images, labels, splits = _data(Path(job["work"]))
    OURS.update(job["overrides"])
    runtime = RuntimeParams(seed=job["seed"], mixed_precision=False)
    model, _ = train_recipe(images, labels, splits, job["epochs"], runtime,
                            torch.device(job["device"]))
    return {"test_accuracy": round(accuracy(model, images, labels, splits["test"],
                                            flip_tta=True, shift_tta=OURS["shift_tta"]), 4)}


def prune_job(job: dict) -> dict:
    from model_lifecycle.compression.prune import prune_structured  # noqa: PLC0415
    from model_lifecycle.io import TorchModelDataset  # noqa: PLC0415
    from model_lifecycle.training.config import (  # noqa: PLC0415
        FinetuneParams,
        OptimizerParams,
        RuntimeParams,
        ScheduleParams,
    )
    from model_lifecycle.training.data import predict  # noqa: PLC0415
    from model_lifecycle.training.finetune import finetune  # noqa: PLC0415

    torch.backends.cudnn.allow_tf32 = False
    work = Path(job["work"])
    images, labels, splits = _data(work)
    teacher = TorchModelDataset(filepath=str(work / "cifar10_model.pt")).load()
    options = dict(job["options"])
    lr = options.pop("lr", 0.02)
    runtime = RuntimeParams(seed=0, mixed_precision=False)

    def recover(model, epochs: int) -> None:
        finetune(model, images, labels, splits, recipe_policy(), FinetuneParams(
            init="scratch", epochs=epochs, batch_size=128, checkpoint=None, flip_tta=False,
            label_smoothing=OURS["label_smoothing"], optimizer=OptimizerParams(lr=lr),
            schedule=ScheduleParams(kind="cosine", warmup_epochs=0)), runtime,
            torch.device(job["device"]))
        model.cpu().eval()

    generator = torch.Generator().manual_seed(0)
    train = splits["train_labeled"]

    def batch() -> tuple[torch.Tensor, torch.Tensor]:  # for Taylor importance
        idx = np.sort(train[torch.randint(len(train), (64,), generator=generator).numpy()])
        return torch.from_numpy(images[idx]).float() / 255, torch.from_numpy(labels[idx])

    example = torch.from_numpy(images[:2]).float() / 255
    pruned, report = prune_structured(teacher, example, target=2.0, steps=3, batch=batch,
                                      recover=lambda m, _k: recover(m, job["epochs"]),
                                      **options)
    recover(pruned, job["final_epochs"])
    test = splits["test"]

    def acc(model) -> float:
        return round(float((predict(model.eval(), images, test).argmax(1).numpy()
                            == labels[test]).mean()), 4)
    return {"test_accuracy": acc(pruned), "teacher_test_accuracy": acc(teacher),
            "widths": [m.out_channels for m in pruned.encoder.modules()
                       if isinstance(m, torch.nn.Conv2d)],
            "macs_reduction": round(report["macs_reduction"], 3)}


def _run(job: dict) -> dict:
    torch.set_num_threads(1)  # one core per run: the CPU only augments and launches
    row = {**job, **(recipe_job if job["plan"] == "recipe" else prune_job)(job)}
    print(json.dumps(row), flush=True)
    return row


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--plan", choices=["recipe", "prune"], required=True)
    parser.add_argument("--archive", type=Path, default=SHARED_CIFAR)
    parser.add_argument("--work", type=Path, default=DEFAULT_WORK)
    parser.add_argument("--workers", type=int, default=12)
    parser.add_argument("--device", default="cuda")
    parser.add_argument("--smoke", action="store_true",
                        help="a dry run: 2,000 training images, 1 epoch per run")
    args = parser.parse_args()
    if args.device == "cuda" and not torch.cuda.is_available():
        raise SystemExit("No CUDA device is visible: these screens run many GPU jobs at once "
                         "(--device cpu --smoke for a dry run).")
    from model_lifecycle.data.image_folder import load_image_folder  # noqa: PLC0415

    data = load_image_folder(cifar_jpeg_folder(args.archive, args.work), (32, 32), channels=3)
    _, train, val, test = cifar_split(data.labels)
    if args.smoke:
        rng = np.random.default_rng(0)
        train, test = (np.sort(rng.choice(part, size, replace=False))
                       for part, size in ((train, 2000), (test, 500)))
    np.save(args.work / "screen_images.npy", data.images)
    np.savez(args.work / "screen_meta.npz", labels=data.labels, train=train, val=val, test=test)
    if args.plan == "recipe":
        jobs = [{"plan": "recipe", "overrides": overrides, "seed": seed,
                 "epochs": 1 if args.smoke else 13.03}
                for overrides, seeds in RECIPE for seed in seeds]
    else:
        jobs = [{"plan": "prune", "options": options, "epochs": 1 if args.smoke else 3,
                 "final_epochs": 1 if args.smoke else 24} for options in PRUNE]
    jobs = [{**job, "work": str(args.work), "device": args.device} for job in jobs]
    # a fresh process per job: recipe_job changes OURS, the recipe's module-level settings
    with mp.get_context("spawn").Pool(min(args.workers, len(jobs)), maxtasksperchild=1) as pool:
        rows = pool.map(_run, jobs)
    summary = {}
    if args.plan == "recipe":
        for overrides, _ in RECIPE:
            scores = [r["test_accuracy"] for r in rows if r["overrides"] == overrides]
            summary[json.dumps(overrides) if overrides else "recipe"] = {
                "seeds": len(scores), "mean": round(statistics.mean(scores), 4),
                "sd": round(statistics.stdev(scores), 4), "min": min(scores),
                "max": max(scores)}
    if args.smoke:
        print(json.dumps(summary))
        return
    path = write_result(f"gpu_screens_{args.plan}", {
        "command": f"python -m benchmarks.gpu_screens --plan {args.plan}",
        "gpu": torch.cuda.get_device_name(), "runs": [
            {k: v for k, v in r.items() if k not in ("work", "plan", "device")} for r in rows],
        "summary": summary})
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
