"""LoRA against full fine-tuning on the embedded digits, for a CNN and the ViT.

Everything is ``kedro run`` of the base environment, as a user would type it; for each
architecture the encoder is pretrained once, then fine-tuned twice from it with the
project's ``finetune`` parameters:

    kedro run --pipelines=ingest,augment,pretrain --params pretrain.arch=A,runtime.seed=S
    kedro run --pipelines=finetune --params finetune.strategy=full,runtime.seed=S
    kedro run --pipelines=finetune --params finetune.strategy=lora,runtime.seed=S

Reported from each run's MLflow record and its catalog files: trainable share, test
accuracy, the ``lora_adapter`` file's size beside the ``finetuned_model`` file's size,
training seconds.

    python -m benchmarks.lora [--archs small_cnn vit] [--seeds 0 1 2] [--epochs E]
    python -m benchmarks.lora --env vit_digits --archs vit    # the ViT with AdamW

Another ``--env`` runs every step in that environment and writes ``lora_<env>.json``.

``--encoder cifar10`` fine-tunes an encoder pretrained with SimCLR on the CIFAR-10
training JPEGs instead (the ``transfer`` pipeline, ``parameters_source.yml``; pretrained
once per architecture, then fine-tuned on the digits per seed; ``lora_cifar10_encoder.json``):

    kedro run --pipelines=transfer --to-nodes=source.pretrain_encoder \
        --params source.pretrain.arch=A,source.ingest.source=image_folder,source.ingest.path=<jpgs>
    kedro run --pipelines=transfer --nodes=finetune_model --params finetune.strategy=lora,...

    python -m benchmarks.lora --encoder cifar10 --archs small_cnn --seeds 0 1 2
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
    latest_version,
    machine,
    scratch_project,
    write_result,
)


def _metric(record: dict, key: str) -> float:
    return float(record[f"metrics.{key}"])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--work", type=Path, default=DEFAULT_WORK)
    parser.add_argument("--archs", nargs="+", default=["small_cnn", "vit"])
    parser.add_argument("--pretrain-epochs", type=float, default=None,
                        help="pretrain.epochs (default: the configured one)")
    parser.add_argument("--epochs", type=float, default=None,
                        help="finetune.epochs (default: the configured one)")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0])
    parser.add_argument("--env", default="base")
    parser.add_argument("--encoder", choices=["digits", "cifar10"], default="digits",
                        help="what the encoder is pretrained on (cifar10: the transfer "
                             "pipeline's source)")
    parser.add_argument("--archive", type=Path, default=SHARED_CIFAR)
    parser.add_argument("--source-budget", type=float, default=None,
                        help="source.pretrain.budget_seconds (default: the configured one)")
    args = parser.parse_args()
    transfer = args.encoder == "cifar10"
    project = scratch_project(args.work / (f"lora_{args.env}" + ("_cifar10" if transfer else "")))
    env = [f"--env={args.env}"]
    start = time.perf_counter()
    rows = []
    for arch, seed_value in ((a, s) for a in args.archs for s in args.seeds):
        seed = {"runtime.seed": seed_value}
        pretrain = {**seed, "pretrain.arch": arch}
        if args.pretrain_epochs:
            pretrain["pretrain.epochs"] = args.pretrain_epochs
        if not transfer:
            encoder = kedro_run(project, *env, "--pipelines=ingest,augment,pretrain",
                                params=pretrain)
        else:
            if seed_value == args.seeds[0]:  # one CIFAR-10 encoder per architecture
                source = {"source.pretrain.arch": arch, "source.ingest.source": "image_folder",
                          "source.ingest.path": cifar_jpeg_folder(args.archive, args.work)}
                if args.source_budget:
                    source["source.pretrain.budget_seconds"] = args.source_budget
                encoder = {k.replace("source.pretrain.", "pretrain."): v for k, v in kedro_run(
                    project, *env, "--pipelines=transfer",
                    "--to-nodes=source.pretrain_encoder", params=source).items()}
            kedro_run(project, *env, "--pipelines=ingest,augment", params=seed)
        for strategy in ("full", "lora"):
            finetune = {**seed, "finetune.strategy": strategy}
            if args.epochs:
                finetune["finetune.epochs"] = args.epochs
            run = (kedro_run(project, *env, "--pipelines=transfer", "--nodes=finetune_model",
                             params=finetune) if transfer else
                   kedro_run(project, *env, "--pipelines=finetune", params=finetune))
            trainable, total = (_metric(run, f"finetune.{k}")
                                for k in ("trainable_params", "total_params"))
            rows.append({
                "arch": arch, "strategy": strategy, "seed": seed_value,
                "trainable_params": int(trainable), "total_params": int(total),
                "trainable_share": trainable / total,
                "test_accuracy": _metric(run, "finetune.test_accuracy"),
                "val_accuracy": _metric(run, "finetune.val_accuracy"),
                "epochs": _metric(run, "finetune.epochs"),
                "finetune_seconds": round(_metric(run, "finetune.train_seconds"), 1),
                "model_file_bytes": latest_version(
                    project, "data/06_models/finetuned_model.pt").stat().st_size,
                # a run with another strategy writes an adapter without tensors
                "adapter_file_bytes": latest_version(
                    project, "data/06_models/lora_adapter.safetensors").stat().st_size
                if strategy == "lora" else None,
                "pretrain_knn_accuracy": _metric(encoder, "pretrain.knn_accuracy"),
                "pretrain_seconds": round(_metric(encoder, "pretrain.train_seconds"), 1)})
            print(rows[-1], flush=True)
    summary = {}
    for arch in args.archs:
        mean = {s: statistics.mean(r["test_accuracy"] for r in rows
                                   if r["arch"] == arch and r["strategy"] == s)
                for s in ("full", "lora")}
        share = next(r["trainable_share"] for r in rows
                     if r["arch"] == arch and r["strategy"] == "lora")
        gap = 100 * (mean["full"] - mean["lora"])
        summary[arch] = {"full_mean_test_accuracy": mean["full"],
                         "lora_mean_test_accuracy": mean["lora"],
                         "accuracy_gap_points": gap, "lora_trainable_share": share,
                         "goal_met": share <= 0.05 and gap <= 2}
        print(arch, summary[arch], flush=True)
    name, flags = ("lora", "") if args.env == "base" else (f"lora_{args.env}",
                                                          f" --env {args.env}")
    if transfer:
        name, flags = f"{name}_cifar10_encoder", f"{flags} --encoder cifar10"
    path = write_result(name, {
        "command": f"python -m benchmarks.lora{flags} --archs {' '.join(args.archs)} "
                   f"--seeds {' '.join(map(str, args.seeds))}",
        "environment": f"{args.env} (the embedded digits)",
        "encoder": ("SimCLR on the CIFAR-10 training JPEGs, the transfer pipeline's source"
                    if transfer else "SimCLR on the digits' training images"),
        "seeds": args.seeds, "summary": summary,
        "pretrain_epochs": args.pretrain_epochs or "configured",
        "finetune_epochs": args.epochs or "configured", "rows": rows,
        "seconds": round(time.perf_counter() - start), "machine": machine()})
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
