"""Real CIFAR-10, a fixed 10-minute training budget on 2 cores: this project's recipe
against the reference article's recipe, side by side, same images.

The 50,000 training JPEGs are decoded once; 10,000 of them (stratified, seed 0) are
kept aside as the test set and never trained on. Each recipe then trains for
``--budget`` seconds of wall time (everything from its first batch to its last,
warm-up measurement included) and is scored on the 10,000 test images.

- article: its VGG (``vgg11_small``), torchvision PIL transforms (random crop with
  4 px padding, flip) in a DataLoader with 2 workers, SGD at lr 0.001 (momentum 0.9),
  batch 64, cross-entropy; trains until the budget is spent.
- project: fine-tuning from scratch through the project's loop (``fit``) on the
  in-memory uint8 array with batched crop (2 px) + flip, ``fast_cnn`` (airbench's
  conv-pool network) at width 0.5 with its first convolution whitened and frozen
  (``whiten_stem``), channels-last, one-cycle SGD (Nesterov, lr 0.2, batch 128, weight
  decay 5e-4), label smoothing 0.2, flip + 1-pixel shift test-time augmentation; the
  1,000 val images are checked once, after the last epoch. The number of epochs
  (fractional: the last pass stops part-way) is set from a measured warm-up so that the
  one-cycle schedule ends inside the budget. The options below change the recipe.
- the pretrained encoder: SimCLR pretraining with the same architecture for
  ``--pretrain-budget`` seconds, reported as k-NN accuracy (test images against the
  training images as memory bank).

    python -m benchmarks.cifar10_budget [--budget 600] [--pretrain-budget 300]
        [--skip article project knn] [--arch A --width W --lr LR --batch-size B
         --weight-decay WD --crop-padding P --label-smoothing E --[no-]whiten-stem
         --[no-]dirac-convs --ema-decay D --norm-bias-lr-scale S
         --norm-weight-lr-scale S --seed N]
"""

from __future__ import annotations

import argparse
import json
import math
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
import yaml
from PIL import Image
from sklearn.model_selection import train_test_split
from torch.utils.data import DataLoader, Dataset
from torchvision import transforms as T

from benchmarks.common import (
    DEFAULT_WORK,
    RESULTS,
    SHARED_CIFAR,
    cifar_jpeg_folder,
    write_result,
)
from model_lifecycle.augment.config import AugmentParams, SupervisedPolicy
from model_lifecycle.data.image_folder import load_image_folder
from model_lifecycle.models import build_model
from model_lifecycle.ssl.probes import features, knn_accuracy
from model_lifecycle.training.config import OptimizerParams, RuntimeParams, ScheduleParams
from model_lifecycle.training.data import predict
from model_lifecycle.training.finetune import FinetuneParams, accuracy, finetune
from model_lifecycle.training.pretrain import PretrainParams, pretrain

CPU = torch.device("cpu")
OURS = {"arch": "fast_cnn", "arch_kwargs": {"width": 0.5}, "batch_size": 128, "lr": 0.2,
        "weight_decay": 5e-4,
        "crop_padding": 2, "label_smoothing": 0.2, "shift_tta": 1,
        "whiten_stem": True, "dirac_convs": False, "ema_decay": None,
        "norm_bias_lr_scale": 1.0, "norm_weight_lr_scale": 1.0, "seed": 0}


class PilCifar(Dataset):
    def __init__(self, images: np.ndarray, labels: np.ndarray, transform) -> None:
        self.images, self.labels, self.transform = images.transpose(0, 2, 3, 1), labels, transform

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, i: int):
        return self.transform(Image.fromarray(self.images[i])), int(self.labels[i])


def article_recipe(images, labels, train, test, budget: float) -> dict:
    torch.manual_seed(0)
    model = build_model("vgg11_small", 10, 3)
    normalize = T.Normalize((0.5, 0.5, 0.5), (0.5, 0.5, 0.5))
    train_set = PilCifar(images[train], labels[train], T.Compose(
        [T.RandomCrop(32, padding=4), T.RandomHorizontalFlip(), T.ToTensor(), normalize]))
    loader = DataLoader(train_set, batch_size=64, shuffle=True, num_workers=2,
                        persistent_workers=True)
    opt = torch.optim.SGD(model.parameters(), lr=0.001, momentum=0.9)
    start, seen, epochs = time.perf_counter(), 0, 0
    model.train()
    while time.perf_counter() - start < budget:
        for x, y in loader:
            loss = F.cross_entropy(model(x), y)
            opt.zero_grad()
            loss.backward()
            opt.step()
            seen += len(y)
            if time.perf_counter() - start >= budget:
                break
        epochs += 1
    trained_s = time.perf_counter() - start
    model.eval()
    correct = 0
    with torch.no_grad():
        for first in range(0, len(test), 500):
            idx = test[first:first + 500]
            x = normalize(torch.from_numpy(images[idx]).float() / 255)
            correct += int((model(x).argmax(1).numpy() == labels[idx]).sum())
    return {"test_accuracy": round(correct / len(test), 4), "train_seconds": round(trained_s),
            "images_seen": seen, "epochs": round(seen / len(train), 2)}


def cifar_split(labels: np.ndarray) -> tuple[np.ndarray, ...]:
    """(pool, train, val, test) indices: 10,000 test images, and the rest (``pool``, in
    the splitter's order) as 1,000 val and the training images; stratified, seed 0."""
    pool, test = train_test_split(np.arange(len(labels)), test_size=10_000, stratify=labels,
                                  random_state=0)
    train, val = train_test_split(pool, test_size=1_000, stratify=labels[pool],
                                  random_state=0)
    return pool, np.sort(train), np.sort(val), np.sort(test)


def recipe_policy() -> SupervisedPolicy:
    return SupervisedPolicy.model_validate({"random_crop": {"padding": OURS["crop_padding"]},
                                            "horizontal_flip": {"p": 0.5}})


def recipe_params(epochs: float) -> FinetuneParams:
    """The project's recipe (``OURS``) for ``epochs`` (fractional: the last pass stops
    part-way)."""
    return FinetuneParams(init="scratch", arch=OURS["arch"], arch_kwargs=OURS["arch_kwargs"],
                          epochs=epochs, batch_size=OURS["batch_size"],
                          optimizer=OptimizerParams(
                              lr=OURS["lr"], weight_decay=OURS["weight_decay"],
                              norm_bias_lr_scale=OURS["norm_bias_lr_scale"],
                              norm_weight_lr_scale=OURS["norm_weight_lr_scale"]),
                          schedule=ScheduleParams(kind="onecycle", warmup_epochs=0.25 * epochs),
                          label_smoothing=OURS["label_smoothing"], flip_tta=True,
                          eval_every=math.ceil(epochs),
                          shift_tta=OURS["shift_tta"], whiten_stem=OURS["whiten_stem"],
                          dirac_convs=OURS["dirac_convs"],
                          ema_decay=OURS["ema_decay"])


def train_recipe(images, labels, splits, epochs: float, runtime: RuntimeParams,
                 device: torch.device):
    """A fresh model trained with the recipe for ``epochs`` on ``train_labeled`` (``val``
    checked at the end, ``test`` left alone); returns (model, fit result)."""
    torch.manual_seed(runtime.seed)
    model = build_model(OURS["arch"], 10, 3, **OURS["arch_kwargs"])
    result, _ = finetune(model, images, labels, {**splits, "test": splits["test"][:0]},
                         recipe_policy(), recipe_params(epochs), runtime, device)
    return model, result


def test_scores(model, images, labels, test) -> dict:
    """Test accuracy with the recipe's flip + shift TTA, and without it."""
    with_tta = accuracy(model, images, labels, test, flip_tta=True,
                        shift_tta=OURS["shift_tta"])
    plain = predict(model, images, test).argmax(1).numpy() == labels[test]
    return {"test_accuracy": round(with_tta, 4),
            "test_accuracy_without_tta": round(float(plain.mean()), 4)}


def pretrain_policy():
    """The SimCLR views of the CIFAR-10 profile (conf/cifar10)."""
    conf = Path(__file__).resolve().parents[1] / "conf/cifar10/parameters_augment.yml"
    return AugmentParams.model_validate(yaml.safe_load(conf.read_text())["augment"]).pretrain


def simclr_knn(model, images, labels, train, test, epochs: int, runtime: RuntimeParams,
               device: torch.device) -> dict:
    """SimCLR-pretrain ``model``'s encoder for ``epochs`` on ``train`` and score it by
    k-NN (``test`` against ``train`` as memory bank)."""
    splits = {"train_labeled": train, "train_unlabeled": train[:0], "val": test}
    params = PretrainParams(arch=OURS["arch"], epochs=epochs, batch_size=256, eval_every=1000,
                            optimizer=OptimizerParams(lr=0.3, weight_decay=1e-4),
                            schedule=ScheduleParams(kind="cosine", warmup_epochs=min(1, epochs)))
    tic = time.perf_counter()
    result, _ = pretrain(model, images, labels, splits, pretrain_policy(), params, runtime,
                         device)
    seconds = time.perf_counter() - tic
    bank, queries = features(model.encoder, images, train), features(model.encoder, images, test)
    return {"knn_accuracy": round(knn_accuracy(bank, labels[train], queries, labels[test]), 4),
            "epochs": epochs, "seconds": seconds, "images_per_s": round(result.images_per_s),
            "method": "simclr"}


def project_recipe(images, labels, train, val, test, budget: float, save_to: Path) -> dict:
    # the catalog's model file (needs kedro); imported here so that cifar10_gpu can import
    # the recipe on a GPU machine that has only torch's stack
    from model_lifecycle.io import TorchModelDataset  # noqa: PLC0415

    start = time.perf_counter()
    policy = recipe_policy()
    runtime = RuntimeParams(seed=OURS["seed"], num_threads=2)
    splits = {"train_labeled": train, "train_unlabeled": train[:0], "val": val, "test": test}

    # Warm-up: two short runs of one epoch, on 2,560 then 7,680 images. The first pays
    # one-off start-up costs; the second measures training images/s and what a run costs
    # besides its epochs (whitening, the 1,000-image val check at the end). Both count
    # against the budget.
    for size in (2560, 7680):
        warm_splits = {**splits, "train_labeled": train[:size], "test": test[:0]}
        torch.manual_seed(0)
        probe = build_model(OURS["arch"], 10, 3, **OURS["arch_kwargs"])
        tic = time.perf_counter()
        warm, _ = finetune(probe, images, labels, warm_splits, policy, recipe_params(1),
                           runtime, CPU)
        run_s = time.perf_counter() - tic
    per_epoch = len(train) / warm.images_per_s
    # what a run costs besides its epochs (whitening, two val checks), + 1 s of margin
    one_off = run_s - 7680 / warm.images_per_s + 1.0
    left = budget - (time.perf_counter() - start) - one_off
    # fractional: the last pass stops part-way, so the schedule fills the budget
    epochs = max(1.0, round(0.98 * left / per_epoch, 2))
    print(f"warm-up: {warm.images_per_s:.0f} images/s, one-off {one_off:.1f} s, "
          f"{left:.0f} s left: {epochs} epochs", flush=True)
    model, result = train_recipe(images, labels, splits, epochs, runtime, CPU)
    trained_s = time.perf_counter() - start  # the test set is scored outside the budget
    TorchModelDataset(filepath=str(save_to)).save(model.cpu().eval())  # for compression
    return {**test_scores(model, images, labels, test),
            "train_seconds": round(trained_s), "epochs": epochs,
            "images_per_s": round(result.images_per_s), **OURS}


def pretrained_knn(images, labels, train, test, budget: float) -> dict:
    policy = pretrain_policy()
    runtime = RuntimeParams(seed=0, num_threads=2)
    torch.manual_seed(0)
    model = build_model(OURS["arch"], 10, 3, **OURS["arch_kwargs"])
    # training images/s measured on a 1,024-image epoch (counted in the budget) sets the
    # number of epochs
    tic = time.perf_counter()
    probe_params = PretrainParams(arch=OURS["arch"], epochs=1, batch_size=256, eval_every=100)
    warm, _ = pretrain(build_model(OURS["arch"], 10, 3, **OURS["arch_kwargs"]), images, labels,
                       {"train_labeled": train[:512], "train_unlabeled": train[512:1024],
                        "val": test[:256]}, policy, probe_params, runtime, CPU)
    left = budget - (time.perf_counter() - tic)
    epochs = max(1, math.floor(0.95 * left * warm.images_per_s / len(train)))
    knn = simclr_knn(model, images, labels, train, test, epochs, runtime, CPU)
    return {"knn_accuracy": knn["knn_accuracy"], "epochs": epochs,
            "seconds": round(knn["seconds"]), "method": "simclr"}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--archive", type=Path, default=SHARED_CIFAR)
    parser.add_argument("--work", type=Path, default=DEFAULT_WORK)
    parser.add_argument("--budget", type=float, default=600)
    parser.add_argument("--pretrain-budget", type=float, default=300)
    parser.add_argument("--skip", nargs="*", default=[], choices=["article", "project", "knn"])
    parser.add_argument("--arch", default=OURS["arch"])
    parser.add_argument("--width", type=float, default=OURS["arch_kwargs"]["width"])
    parser.add_argument("--lr", type=float, default=OURS["lr"])
    parser.add_argument("--weight-decay", type=float, default=OURS["weight_decay"])
    parser.add_argument("--batch-size", type=int, default=OURS["batch_size"])
    parser.add_argument("--crop-padding", type=int, default=OURS["crop_padding"])
    parser.add_argument("--label-smoothing", type=float, default=OURS["label_smoothing"])
    parser.add_argument("--whiten-stem", action=argparse.BooleanOptionalAction,
                        default=OURS["whiten_stem"])
    parser.add_argument("--dirac-convs", action=argparse.BooleanOptionalAction,
                        default=OURS["dirac_convs"])
    parser.add_argument("--ema-decay", type=float, default=OURS["ema_decay"])
    parser.add_argument("--seed", type=int, default=OURS["seed"],
                        help="initial weights, batch order and augmentation (not the split)")
    parser.add_argument("--norm-bias-lr-scale", type=float, default=OURS["norm_bias_lr_scale"])
    parser.add_argument("--norm-weight-lr-scale", type=float,
                        default=OURS["norm_weight_lr_scale"])
    args = parser.parse_args()
    OURS.update(arch=args.arch, arch_kwargs={"width": args.width}, lr=args.lr,
                weight_decay=args.weight_decay,
                batch_size=args.batch_size, crop_padding=args.crop_padding,
                label_smoothing=args.label_smoothing, whiten_stem=args.whiten_stem,
                dirac_convs=args.dirac_convs,
                ema_decay=args.ema_decay, norm_bias_lr_scale=args.norm_bias_lr_scale,
                norm_weight_lr_scale=args.norm_weight_lr_scale, seed=args.seed)
    torch.set_num_threads(2)
    data = load_image_folder(cifar_jpeg_folder(args.archive, args.work), (32, 32), channels=3)
    pool, train, val, test = cifar_split(data.labels)
    results: dict = {}
    if "article" not in args.skip:
        results["article"] = article_recipe(data.images, data.labels, pool, test, args.budget)
        print("article", results["article"], flush=True)
    if "project" not in args.skip:
        results["project"] = project_recipe(data.images, data.labels, train, val, test,
                                            args.budget, args.work / "cifar10_model.pt")
        print("project", results["project"], flush=True)
    if "knn" not in args.skip:
        results["pretrained_encoder"] = pretrained_knn(data.images, data.labels, pool, test,
                                                       args.pretrain_budget)
        print("pretrained", results["pretrained_encoder"], flush=True)
    previous = RESULTS / "cifar10_budget.json"
    if previous.exists():  # parts skipped in this run keep their last measurement
        old = json.loads(previous.read_text())
        results = {k: old[k] for k in ("article", "project", "pretrained_encoder")
                   if k in old and k not in results} | results
    path = write_result("cifar10_budget", {
        "command": "python -m benchmarks.cifar10_budget", "budget_s": args.budget,
        "train_images": len(pool), "test_images": len(test), **results,
        "goal": "project >= 88% test accuracy in 10 minutes on 2 cores",
    })
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
