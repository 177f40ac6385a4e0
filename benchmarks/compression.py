"""Every compressed variant against the fine-tuned model: accuracy, MACs, parameters,
file size and CPU latency, on the embedded digits or on real CIFAR-10.

- digits: the fine-tuned model is trained here (all training labels, the default
  fine-tuning recipe, from scratch); 360 test images.
- cifar10: the model trained by ``python -m benchmarks.cifar10_budget`` (saved to
  ``<work>/cifar10_model.pt``) and the same 10,000 held-out test images. Recovery and
  the students train with that run's augmentation (2 px crop, flip) and label
  smoothing, for fewer epochs (3 per milestone + 12, and 30) to fit a CPU session
  (``--recovery-epochs``, ``--final-epochs``, ``--distill-epochs`` change them). The
  student is ``fast_cnn`` at width 0.24 (4.4× fewer parameters), its first convolution
  whitened as the teacher's was (both students start from the same weights).
  ``--student-widths 24 32 56 56`` keeps the teacher's stem and first block and narrows
  the rest instead (4.2× fewer parameters), and ``--init-from-teacher`` starts the
  distilled student from those two stages of the teacher (the student without the
  teacher keeps its random start); ``--temperature`` overrides the conf's 4
  (the teacher was trained with label smoothing: at 4 its softened outputs are nearly
  uniform, mean top probability 0.21 on ten classes against 0.72 at 1).
  ``--keep-stem`` leaves the teacher's frozen whitened stem whole when pruning
  (``compress.prune.keep_stem``).

Variants use the project's default ``compress`` parameters (structured pruning to 2×
fewer MACs with channel counts kept multiples of 8, recovery fine-tuning, static INT8
quantization, a distilled student), plus two
baselines: the float model with batch norms folded (what INT8 is compared against)
and the student trained without the teacher. Latency: median of 30 timed runs after
10 warm-up runs, 1 thread, batch 1 and 32, weights and input channels-last; every variant
is timed once per round over 7 interleaved rounds and the median of the rounds is kept.

    python -m benchmarks.compression --data digits
    python -m benchmarks.compression --data cifar10
    # what make bench runs on cifar10:
    python -m benchmarks.compression --data cifar10 --temperature 1 \\
        --student-widths 24 32 56 56 --init-from-teacher --final-epochs 24 --keep-stem
"""

from __future__ import annotations

import argparse
import copy
import statistics
from pathlib import Path

import numpy as np
import torch
import yaml

from benchmarks.cifar10_budget import OURS, cifar_split, recipe_policy
from benchmarks.common import DEFAULT_WORK, SHARED_CIFAR, cifar_jpeg_folder, write_result
from model_lifecycle.augment.config import AugmentParams
from model_lifecycle.compression.config import CompressParams
from model_lifecycle.compression.distill_train import distill
from model_lifecycle.compression.prune import prune_structured
from model_lifecycle.compression.quantize import fold_batch_norms, quantize
from model_lifecycle.compression.report import describe
from model_lifecycle.data.config import SplitFractions
from model_lifecycle.data.digits import load_digits
from model_lifecycle.data.image_folder import load_image_folder
from model_lifecycle.data.splits import make_splits
from model_lifecycle.evaluation.cost import cpu_latency_ms
from model_lifecycle.io import TorchModelDataset
from model_lifecycle.models import build_model
from model_lifecycle.training.config import OptimizerParams, RuntimeParams, ScheduleParams
from model_lifecycle.training.finetune import FinetuneParams, finetune, whiten_stem

ROOT = Path(__file__).resolve().parents[1]
CPU = torch.device("cpu")


def _conf(env: str, name: str) -> dict:
    return yaml.safe_load((ROOT / f"conf/{env}/parameters_{name}.yml").read_text())[name]


def digits_setup():
    data = load_digits((16, 16))
    splits = make_splits(data, SplitFractions(), labeled_fraction=1.0, seed=0)
    policy = AugmentParams.model_validate(_conf("base", "augment")).supervised
    recipe = {**_conf("base", "finetune"), "init": "scratch", "checkpoint": None}
    torch.manual_seed(0)
    model = build_model("small_cnn", 10, 1)
    finetune(model, data.images, data.labels, splits, policy,
             FinetuneParams.model_validate(recipe), RuntimeParams(), CPU)
    return data.images, data.labels, splits, policy, model.cpu().eval(), recipe


def cifar_setup(work: Path, archive: Path):
    data = load_image_folder(cifar_jpeg_folder(archive, work), (32, 32), channels=3)
    _, train, val, test = cifar_split(data.labels)
    splits = {"train_labeled": train, "train_unlabeled": train[:0], "val": val, "test": test}
    # recovery and the students train with the augmentation and label smoothing that the
    # model itself was trained with in cifar10_budget
    policy = recipe_policy()
    model = TorchModelDataset(filepath=str(work / "cifar10_model.pt")).load()
    recipe = {"init": "scratch", "epochs": 1, "batch_size": OURS["batch_size"],
              "label_smoothing": OURS["label_smoothing"], "checkpoint": None,
              "flip_tta": False}
    return data.images, data.labels, splits, policy, model, recipe


def _arguments() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", choices=["digits", "cifar10"], default="digits")
    parser.add_argument("--archive", type=Path, default=SHARED_CIFAR)
    parser.add_argument("--work", type=Path, default=DEFAULT_WORK)
    parser.add_argument("--prune-target", type=float, default=None,
                        help="× fewer MACs (default: compress.prune.target)")
    parser.add_argument("--recovery-epochs", type=int, default=None,
                        help="per milestone (default: the conf's; 3 on cifar10)")
    parser.add_argument("--final-epochs", type=int, default=None,
                        help="after the last milestone (default: the conf's; 12 on cifar10)")
    parser.add_argument("--distill-epochs", type=int, default=None,
                        help="student epochs (default: the conf's; 30 on cifar10)")
    parser.add_argument("--temperature", type=float, default=None,
                        help="distillation temperature (default: the conf's, 4)")
    parser.add_argument("--student-widths", type=int, nargs=4, default=None,
                        help="cifar10 student: fast_cnn stage widths instead of width 0.24")
    parser.add_argument("--init-from-teacher", action="store_true",
                        help="the distilled student starts from the teacher's matching "
                             "leading stages (compress.distill.init_from_teacher)")
    parser.add_argument("--keep-stem", action="store_true",
                        help="pruning leaves the first convolution whole "
                             "(compress.prune.keep_stem)")
    parser.add_argument("--latency-rounds", type=int, default=7,
                        help="interleaved latency rounds (each: every variant, 30 runs)")
    args = parser.parse_args()
    if args.student_widths and args.data != "cifar10":
        parser.error("--student-widths sets the cifar10 student; the digits student is "
                     "compress.distill in conf/base/parameters_compress.yml")
    return args


def train_students(teacher, images, labels, splits, policy, config, recipe, *, whiten: bool):
    """The student distilled from ``teacher`` and the same student trained without it,
    from the same initial weights (``whiten``: first convolution whitened, as the
    teacher's was)."""
    runtime = RuntimeParams()
    torch.manual_seed(0)
    student = build_model(config.distill.student_arch, int(labels.max()) + 1,
                          images.shape[1], **config.distill.student_kwargs)
    if whiten:
        whiten_stem(student, images, splits["train_labeled"], seed=runtime.seed)
    alone = copy.deepcopy(student)
    distill(student, teacher, images, labels, splits, policy, config.distill, runtime, CPU)
    finetune(alone, images, labels, splits, policy, FinetuneParams.model_validate({
        **recipe, "epochs": config.distill.epochs, "batch_size": config.distill.batch_size,
        "optimizer": config.distill.optimizer, "schedule": config.distill.schedule}),
        runtime, CPU)
    return student, alone


def main() -> None:
    args = _arguments()
    torch.set_num_threads(2)
    if args.data == "digits":
        images, labels, splits, policy, model, recipe = digits_setup()
    else:
        images, labels, splits, policy, model, recipe = cifar_setup(args.work, args.archive)
    raw = {**_conf("base", "compress"),
           "latency": {"threads": 1, "warmup": 10, "repeats": 30}}
    if args.data == "cifar10":  # 39,000 training images: fewer epochs fit a CPU session
        raw["prune"] = {**raw["prune"], "recovery_epochs": 3, "final_epochs": 12}
        # the teacher is fast_cnn width 0.5 (cifar10_budget); width 0.24 has 4.4x fewer
        # parameters. --student-widths: per-stage widths instead (the parameters sit in
        # blocks 2 and 3, the compute in the stem and block 1)
        student = {"widths": args.student_widths} if args.student_widths else {"width": 0.24}
        raw["distill"] = {**raw["distill"], "epochs": 30, "student_arch": "fast_cnn",
                          "student_kwargs": student}
    options = {"target": args.prune_target, "recovery_epochs": args.recovery_epochs,
               "final_epochs": args.final_epochs, "keep_stem": args.keep_stem or None}
    raw["prune"] = {**raw["prune"], **{k: v for k, v in options.items() if v is not None}}
    if args.distill_epochs is not None:
        raw["distill"] = {**raw["distill"], "epochs": args.distill_epochs}
    if args.temperature is not None:
        raw["distill"] = {**raw["distill"], "temperature": args.temperature}
    if args.init_from_teacher:
        raw["distill"] = {**raw["distill"], "init_from_teacher": True}
    config = CompressParams.model_validate(raw)
    runtime = RuntimeParams()
    example = torch.from_numpy(images[:2]).float() / 255

    def recover(m, epochs):
        if epochs:
            finetune(m, images, labels, splits, policy, FinetuneParams.model_validate({
                **recipe, "epochs": epochs, "optimizer": OptimizerParams(lr=config.prune.lr),
                "schedule": ScheduleParams(kind="cosine", warmup_epochs=0)}), runtime, CPU)
            m.cpu().eval()

    prune = config.prune
    pruned, report = prune_structured(model, example, target=prune.target, metric=prune.metric,
                                      steps=prune.steps, round_to=prune.round_to,
                                      keep_stem=prune.keep_stem,
                                      recover=lambda m, _k: recover(m, prune.recovery_epochs))
    recover(pruned, prune.final_epochs)
    rng = np.random.default_rng(0)
    calibration = [torch.from_numpy(images[rng.choice(splits["train_labeled"], 64)]).float()
                   / 255 for _ in range(config.quantize.calibration_batches)]
    quantized = quantize(model, calibration[0], calibration=calibration)
    student, alone = train_students(model, images, labels, splits, policy, config, recipe,
                                    whiten=args.data == "cifar10" and OURS["whiten_stem"])
    variants = {"finetuned": (model, None),
                "finetuned, BN folded": (fold_batch_norms(model), model),
                "pruned (structured)": (pruned, None),
                "quantized (INT8 static)": (quantized, model),
                "distilled student": (student.cpu().eval(), None),
                "student without teacher": (alone.cpu().eval(), None)}
    table = {}
    for name, (variant, source) in variants.items():
        row = describe(variant, images, labels, splits, config.latency, float_source=source)
        table[name] = {k: round(v, 5) for k, v in row.items()}
    # Latency again, side by side: every variant once per round, the median over rounds,
    # so that a burst of load on a shared machine cannot land on one variant only.
    latency = config.latency
    for batch in latency.batch_sizes:
        rounds: dict[str, list[float]] = {name: [] for name in variants}
        for _ in range(args.latency_rounds):
            for name, (variant, _source) in variants.items():
                rounds[name].append(cpu_latency_ms(
                    variant, example, batch_size=batch, threads=latency.threads,
                    warmup=latency.warmup, repeats=latency.repeats,
                    channels_last=latency.channels_last)["median"])
        for name, values in rounds.items():
            table[name][f"latency_b{batch}_ms"] = round(statistics.median(values), 5)
    for name, row in table.items():
        print(name, row, flush=True)
    base, folded = table["finetuned"], table["finetuned, BN folded"]
    ratios = {
        "pruned_macs_reduction": round(base["macs"] / table["pruned (structured)"]["macs"], 2),
        "pruned_speedup_b32": round(base["latency_b32_ms"]
                                    / table["pruned (structured)"]["latency_b32_ms"], 2),
        "pruned_speedup_b1": round(base["latency_b1_ms"]
                                   / table["pruned (structured)"]["latency_b1_ms"], 2),
        "pruned_accuracy_drop_points": round(100 * (base["test_accuracy"] - table[
            "pruned (structured)"]["test_accuracy"]), 2),
        "int8_size_reduction_vs_folded": round(folded["size_bytes"]
                                               / table["quantized (INT8 static)"]["size_bytes"], 2),
        "int8_speedup_b32_vs_folded": round(folded["latency_b32_ms"] / table[
            "quantized (INT8 static)"]["latency_b32_ms"], 2),
        "int8_accuracy_drop_points": round(100 * (base["test_accuracy"] - table[
            "quantized (INT8 static)"]["test_accuracy"]), 2),
        "student_param_reduction": round(base["params"] / table["distilled student"]["params"], 2),
        "student_accuracy_drop_points": round(100 * (base["test_accuracy"] - table[
            "distilled student"]["test_accuracy"]), 2),
        "distillation_gain_points": round(100 * (table["distilled student"]["test_accuracy"]
                                                 - table["student without teacher"][
                                                     "test_accuracy"]), 2),
    }
    print(ratios)
    flags = {"--prune-target": args.prune_target, "--recovery-epochs": args.recovery_epochs,
             "--final-epochs": args.final_epochs, "--distill-epochs": args.distill_epochs,
             "--temperature": args.temperature,
             "--init-from-teacher": "" if args.init_from_teacher else None,
             "--keep-stem": "" if args.keep_stem else None,
             "--student-widths": " ".join(map(str, args.student_widths or [])) or None}
    suffix = "".join(f" {flag} {value}".rstrip() for flag, value in flags.items()
                     if value is not None)
    name = f"compression_{args.data}" + ("_custom" if suffix else "")
    path = write_result(name, {
        "command": f"python -m benchmarks.compression --data {args.data}{suffix}",
        "epochs": {"recovery_per_milestone": config.prune.recovery_epochs,
                   "final_recovery": config.prune.final_epochs,
                   "distill": config.distill.epochs},
        "distill": {"temperature": config.distill.temperature, "alpha": config.distill.alpha,
                    "init_from_teacher": config.distill.init_from_teacher,
                    "student": {"arch": config.distill.student_arch,
                                **config.distill.student_kwargs}},
        "prune": {"importance": "magnitude", "round_to": config.prune.round_to,
                  "keep_stem": config.prune.keep_stem},
        "test_images": len(splits["test"]), "prune_report": report,
        "latency": {**config.latency.model_dump(), "interleaved_rounds": args.latency_rounds},
        "variants": table, "ratios": ratios,
        "goals": "pruned >= 2x fewer MACs, >= 1.6x faster, within 1 point; INT8 >= 3.5x "
                 "smaller, >= 2.5x faster at batch 32 than the BN-folded float model, within "
                 "0.5 point; student >= 4x fewer parameters, within 1.5 points, better than "
                 "without the teacher",
    })
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
