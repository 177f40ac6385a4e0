"""LoRA against full fine-tuning on the embedded digits, for a CNN and the ViT.

For each architecture the encoder is pretrained once (SimCLR, the project's `pretrain`
parameters, `--pretrain-epochs`), then fine-tuned twice from it with the project's
`finetune` parameters and the same epochs: `strategy: full` and `strategy: lora`
(`finetune.lora` as configured). Reported: trainable share, test accuracy, the adapter
file's size beside the full model file's size, seconds.

    python -m benchmarks.lora [--archs small_cnn vit] [--pretrain-epochs 30] [--epochs 40]
"""

from __future__ import annotations

import argparse
import copy
import tempfile
import time
from pathlib import Path

import torch
from torch import nn

from benchmarks.common import conf_parameters, write_result
from model_lifecycle.augment.config import AugmentParams
from model_lifecycle.data.config import IngestParams
from model_lifecycle.data.digits import load_digits
from model_lifecycle.data.splits import make_splits
from model_lifecycle.io import LoraAdapterDataset, TorchModelDataset
from model_lifecycle.models.adapt import apply_strategy
from model_lifecycle.models.lora import adapter_state_dict, add_lora, merge_lora
from model_lifecycle.models.registry import build_model
from model_lifecycle.training.config import RuntimeParams
from model_lifecycle.training.finetune import FinetuneParams, finetune
from model_lifecycle.training.pretrain import PretrainParams, pretrain

VIT = {"depth": 6, "width": 192, "heads": 3, "mlp_dim": 384}  # the registry's defaults


def _params(name: str, model, **update):
    raw = dict(conf_parameters("base")[name])
    raw.update({"checkpoint": None} if "checkpoint" in raw else {})
    return model.model_validate({**raw, **update})


def _size(save, data) -> int:
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "file"
        save(str(path)).save(data)
        return path.stat().st_size


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--archs", nargs="+", default=["small_cnn", "vit"])
    parser.add_argument("--pretrain-epochs", type=float, default=30)
    parser.add_argument("--epochs", type=float, default=None, help="default: finetune.epochs")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    torch.set_num_threads(2)
    ingest = _params("ingest", IngestParams)
    augment = _params("augment", AugmentParams)
    data = load_digits(ingest.size_hw)
    splits = make_splits(data, ingest.splits, labeled_fraction=ingest.labeled_fraction,
                         seed=ingest.seed)
    runtime, cpu = RuntimeParams(seed=args.seed), torch.device("cpu")
    rows = []
    for arch in args.archs:
        kwargs = VIT if arch == "vit" else {}
        pre = _params("pretrain", PretrainParams, arch=arch, arch_kwargs=kwargs,
                      epochs=args.pretrain_epochs)
        torch.manual_seed(args.seed)
        encoder = build_model(arch, 10, 1, input_size=data.image_shape[1:], **kwargs)
        start = time.perf_counter()
        _, quality = pretrain(encoder, data.images, data.labels, splits, augment.pretrain,
                              pre, runtime, cpu)
        pretrain_seconds = time.perf_counter() - start
        for strategy in ("full", "lora"):
            fine = _params("finetune", FinetuneParams, strategy=strategy,
                           **({"epochs": args.epochs} if args.epochs else {}))
            model = copy.deepcopy(encoder)
            model.head = nn.Linear(model.encoder.feature_dim, 10)
            tuner = None
            if strategy == "lora":
                tuner = add_lora(model, rank=fine.lora.rank, alpha=fine.lora.alpha,
                                 dropout=fine.lora.dropout,
                                 target_modules=fine.lora.target_modules)
            counts = apply_strategy(model, strategy)
            torch.manual_seed(args.seed)
            start = time.perf_counter()
            _, scores = finetune(model, data.images, data.labels, splits, augment.supervised,
                                 fine, runtime, cpu)
            seconds = time.perf_counter() - start
            adapter_bytes = None
            if tuner is not None:
                adapter = {"metadata": {"strategy": "lora"},
                           "tensors": adapter_state_dict(model.cpu())}
                adapter_bytes = _size(lambda p: LoraAdapterDataset(filepath=p), adapter)
                model = merge_lora(tuner)
            rows.append({
                "arch": arch, "strategy": strategy, **counts,
                "trainable_share": counts["trainable_params"] / counts["total_params"],
                "test_accuracy": scores["test_accuracy"], "val_accuracy": scores["val_accuracy"],
                "epochs": scores["epochs"], "finetune_seconds": round(seconds, 1),
                "model_file_bytes": _size(lambda p: TorchModelDataset(filepath=p),
                                          model.cpu().eval()),
                "adapter_file_bytes": adapter_bytes,
                "pretrain_knn_accuracy": quality["knn_accuracy"],
                "pretrain_seconds": round(pretrain_seconds, 1)})
            print(rows[-1], flush=True)
    for arch in args.archs:
        full, lora = (next(r for r in rows if r["arch"] == arch and r["strategy"] == s)
                      for s in ("full", "lora"))
        lora["accuracy_gap_points"] = 100 * (full["test_accuracy"] - lora["test_accuracy"])
        lora["goal_met"] = lora["trainable_share"] <= 0.05 and lora["accuracy_gap_points"] <= 2
    path = write_result("lora", {"pretrain_epochs": args.pretrain_epochs,
                                 "labeled_fraction": ingest.labeled_fraction,
                                 "image_size": list(data.image_shape[1:]), "rows": rows})
    print(path)


if __name__ == "__main__":
    main()
