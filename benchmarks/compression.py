"""Every compressed variant against the fine-tuned model, through
``kedro run --env=<env> --pipelines=compress,explain,evaluate`` (the settings are the
environment's ``compress`` group): accuracy, MACs, parameters, file size and CPU
latency from the evaluation report, plus what the goals compare against:

- the fine-tuned model with batch norms folded (INT8's fair float reference for
  latency; measured by the compress pipeline as ``finetuned.folded_*``);
- the same student trained without the teacher: built as ``compress.distill`` builds it
  but without ``init_from_teacher``, trained on the labels with the distillation's
  epochs, batch size, optimizer and schedule through the project's fine-tuning.

Environments:

- ``cifar10``: the model that ``python -m benchmarks.cifar10_budget`` trained (its
  scratch project is reused; run that first), the 10,000 held-out test images.
- ``base``: the embedded digits; the model is fine-tuned first with
  ``kedro run --pipelines=ingest,augment,finetune`` on all training labels, from scratch.

    python -m benchmarks.compression --env base
    python -m benchmarks.compression --env cifar10

``--layer-ratios '{"encoder.stages.1": 0.9, …}'`` prunes only, with
``compress.prune.structured.layer_ratios`` set to that mapping (the ``prune_model``
node's own function, on the environment's parameters and the scratch project's latest
fine-tuned model), and sets the result beside the fine-tuned model and the project's
latest ``pruned`` version (the environment's own layout, where one was made from that
model): test accuracy, MACs, channel
widths, and latency timed side by side (``evaluate.latency``); results/
compression_prune_layout.json. ``--recovery-teacher '{"temperature": 1, "alpha": 0.9}'``
sets ``compress.prune.recovery.teacher`` (``null``: recovery on the labels alone; not
given: the environment's, which for ``cifar10`` is the flip-averaged teacher); with a
teacher the file is results/compression_prune_layout_teacher.json (``_teacher_flip``
with ``"flip": true``).
``--recovery '{"final_epochs": 36}'`` updates ``compress.prune.recovery`` by that mapping
(the file's name gets ``_final_epochs36``).

``--distill '{"teacher_flip": true, …}'`` distils only, with ``compress.distill`` updated
by that mapping (the ``distill_model`` node's own function, same model and data): the
student's and the teacher's test accuracy; results/compression_distill_variant.json.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import pandas as pd
import torch

from benchmarks.common import (
    DEFAULT_WORK,
    conf_parameters,
    kedro_run,
    latest_version,
    refresh_conf,
    scratch_project,
    show_progress,
    write_result,
)
from model_lifecycle.augment.config import policy_from_artifact
from model_lifecycle.compression.config import CompressParams
from model_lifecycle.compression.distill_train import build_student
from model_lifecycle.data.splits import checked_splits
from model_lifecycle.evaluation.config import EvaluateParams
from model_lifecycle.evaluation.cost import side_by_side_latencies_ms
from model_lifecycle.io import ImageSetDataset, JsonDataset, NpzDataset, TorchModelDataset
from model_lifecycle.models.predict import accuracy
from model_lifecycle.models.structure import cost
from model_lifecycle.params import parse_params
from model_lifecycle.pipelines.compress.nodes import distill_model, prune_model
from model_lifecycle.training.config import FinetuneParams, RuntimeParams
from model_lifecycle.training.finetune import finetune

GOALS = ("pruned >= 2x fewer MACs, >= 1.6x faster at batch 32, within 1 point; INT8 >= "
         "3.5x smaller, >= 2.5x faster at batch 32 than the BN-folded float model, within "
         "0.5 point; student >= 4x fewer parameters, within 1.5 points, better than without "
         "the teacher")


def _project_data(project: Path) -> tuple:
    """The latest ``images``, ``splits`` and ``augmentation_policy`` of ``project``."""
    images = ImageSetDataset(filepath=str(latest_version(project, "data/03_primary/images.npz"))
                             ).load()
    splits = NpzDataset(filepath=str(latest_version(project, "data/05_model_input/splits.npz"))
                        ).load()
    policy = JsonDataset(filepath=str(latest_version(
        project, "data/05_model_input/augmentation_policy.json"))).load()
    return images, splits, policy


def student_without_teacher(project: Path, compress: CompressParams, runtime: RuntimeParams,
                            label_smoothing: float) -> float:
    """Test accuracy of the distilled student's architecture trained on labels alone
    (with the teacher's label smoothing)."""
    images, splits, policy = _project_data(project)
    teacher = TorchModelDataset(filepath=str(latest_version(
        project, "data/06_models/finetuned_model.pt"))).load()
    distill = compress.distill.model_copy(update={"init_from_teacher": False})
    torch.manual_seed(runtime.seed)
    student = build_student(teacher, images.images, splits, distill, runtime)
    params = FinetuneParams(init="scratch", epochs=distill.epochs, batch_size=distill.batch_size,
                            optimizer=distill.optimizer, schedule=distill.schedule,
                            label_smoothing=label_smoothing, checkpoint=None)
    finetune(student, images.images, images.labels, splits,
             policy_from_artifact(policy, "supervised"), params, runtime, torch.device("cpu"),
             name="student without teacher")
    return accuracy(student.cpu().eval(), images.images, images.labels, splits["test"])


class _Keep:
    """--recovery-teacher not given: conf's recovery.teacher. Not a string: argparse
    would pass a string default through the option's ``type`` (json.loads)."""

    def __repr__(self) -> str:
        return "the environment's"


KEEP = _Keep()


def prune_layout(project: Path, env: str, conf: dict, layer_ratios: dict[str, float],
                 teacher: dict | None | _Keep = KEEP, recovery: dict | None = None) -> None:
    """Pruning alone with ``layer_ratios``, beside the fine-tuned model and the latest
    ``pruned`` version of ``project`` (see the module's docstring)."""
    images, splits, policy = _project_data(project)
    finetuned_file = latest_version(project, "data/06_models/finetuned_model.pt")
    finetuned = TorchModelDataset(filepath=str(finetuned_file)).load()
    sources = {"finetuned": str(finetuned_file.relative_to(project))}
    models = {"finetuned": finetuned}
    # the environment's own layout, where the compress pipeline has pruned this model
    pruned_file = latest_version(project, "data/06_models/pruned_model.pt", missing_ok=True)
    if pruned_file is not None and pruned_file.parent.name > finetuned_file.parent.name:
        sources["pruned (the environment's layout)"] = str(pruned_file.relative_to(project))
        models["pruned (the environment's layout)"] = TorchModelDataset(
            filepath=str(pruned_file)).load()
    compress = json.loads(json.dumps(conf["compress"]))
    compress["prune"]["structured"]["layer_ratios"] = layer_ratios
    compress["prune"]["recovery"].update(recovery or {})
    if teacher is not KEEP:
        compress["prune"]["recovery"]["teacher"] = teacher
    used = compress["prune"]["recovery"]["teacher"]
    layout, _ = prune_model(finetuned, images, splits, policy, compress, conf["runtime"],
                            conf["evaluate"])
    models["pruned (layer_ratios)"] = layout
    latency = parse_params(EvaluateParams, conf["evaluate"], "evaluate").latency
    test = checked_splits(images, splits)["test"]
    example = torch.from_numpy(images.images[:1]).float() / 255
    timed = side_by_side_latencies_ms(models, example, latency)
    base = timed["finetuned"][32]["median"]
    rows = {}
    for name, model in models.items():
        rows[name] = {
            "accuracy": round(accuracy(model, images.images, images.labels, test), 5),
            "macs_reduction": round(cost(finetuned, example)["macs"]
                                    / cost(model, example)["macs"], 3),
            "widths": [m.out_channels for m in model.encoder.modules()
                       if isinstance(m, torch.nn.Conv2d)],
            "latency_b32_p50_ms": round(timed[name][32]["median"], 4),
            "speedup_b32": round(base / timed[name][32]["median"], 3)}
        print(name, rows[name], flush=True)
    recovered_by = "" if not used else "_teacher_flip" if used.get("flip") else "_teacher"
    name = "compression_prune_layout" + recovered_by + "".join(
        f"_{key}{value}" for key, value in (recovery or {}).items())
    path = write_result(name, {
        "command": f"python -m benchmarks.compression --env {env} --layer-ratios "
                   f"'{json.dumps(layer_ratios)}'"
                   + (f" --recovery-teacher '{json.dumps(teacher)}'" if teacher is not KEEP
                      else "")
                   + (f" --recovery '{json.dumps(recovery)}'" if recovery else ""),
        "models": sources,
        "prune": compress["prune"], "test_images": len(test), "variants": rows,
        "goals": GOALS})
    print(f"wrote {path}")


def distill_variant(project: Path, env: str, conf: dict, changes: dict) -> None:
    """Distillation alone with ``compress.distill`` updated by ``changes`` (see the
    module's docstring)."""
    images, splits, policy = _project_data(project)
    teacher_file = latest_version(project, "data/06_models/finetuned_model.pt")
    teacher = TorchModelDataset(filepath=str(teacher_file)).load()
    compress = json.loads(json.dumps(conf["compress"]))
    compress["distill"].update(changes)
    student, metrics = distill_model(teacher, images, splits, policy, compress,
                                     conf["runtime"], conf["evaluate"])
    test = checked_splits(images, splits)["test"]
    rows = {name: round(accuracy(model, images.images, images.labels, test), 5)
            for name, model in (("teacher", teacher), ("student", student))}
    print(rows, flush=True)
    path = write_result("compression_distill_variant", {
        "command": f"python -m benchmarks.compression --env {env} --distill "
                   f"'{json.dumps(changes)}'",
        "teacher": str(teacher_file.relative_to(project)), "distill": compress["distill"],
        "test_images": len(test), "accuracy": rows,
        "student_accuracy_drop_points": round(100 * (rows["teacher"] - rows["student"]), 2),
        "train_seconds": round(metrics["train_seconds"][0]["value"], 1),
        "goals": GOALS})
    print(f"wrote {path}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--env", choices=["base", "cifar10"], default="base")
    parser.add_argument("--work", type=Path, default=DEFAULT_WORK)
    parser.add_argument("--layer-ratios", type=json.loads, default=None,
                        help="prune only, with this compress.prune.structured.layer_ratios")
    parser.add_argument("--recovery-teacher", type=json.loads, default=KEEP,
                        help="with --layer-ratios: compress.prune.recovery.teacher ('null': "
                             "recovery on the labels alone; default: the environment's)")
    parser.add_argument("--recovery", type=json.loads, default=None,
                        help="with --layer-ratios: compress.prune.recovery updated by this "
                             "mapping, e.g. '{\"final_epochs\": 36}'")
    parser.add_argument("--distill", type=json.loads, default=None,
                        help="distil only, with compress.distill updated by this mapping")
    args = parser.parse_args()
    show_progress()
    conf = conf_parameters(args.env)
    compress = parse_params(CompressParams, conf["compress"], "compress")
    runtime = parse_params(RuntimeParams, conf["runtime"], "runtime")
    env = [f"--env={args.env}"]
    if args.env == "cifar10":
        project = args.work / "cifar10" / "project"
        if not (project / "mlflow.db").exists():
            raise SystemExit(f"{project} holds no budget run: run python -m "
                             "benchmarks.cifar10_budget first")
        refresh_conf(project)  # the environment as committed, not as the budget run copied it
    else:
        project = scratch_project(args.work / "compression_digits")
        if args.layer_ratios is not None or args.distill is not None:
            raise SystemExit("--layer-ratios and --distill reuse the budget run's model: use "
                             "them with --env cifar10")
        kedro_run(project, *env, "--pipelines=ingest,augment,finetune",
                  params={"ingest.labeled_fraction": 1.0, "finetune.init": "scratch"})
    if args.layer_ratios is not None:
        prune_layout(project, args.env, conf, args.layer_ratios, args.recovery_teacher,
                     args.recovery)
        return
    if args.distill is not None:
        distill_variant(project, args.env, conf, args.distill)
        return
    run = kedro_run(project, *env, "--pipelines=compress,explain,evaluate")
    report = pd.read_csv(latest_version(project, "data/08_reporting/evaluation_report.csv"))
    rows = report.set_index("variant")
    alone = student_without_teacher(project, compress, runtime,
                                    conf["finetune"]["label_smoothing"])
    base, pruned = rows.loc["finetuned"], rows.loc["pruned"]
    int8, student = rows.loc["quantized"], rows.loc["distilled"]
    folded_b32 = run["metrics.finetuned.folded_latency_b32_ms"]
    ratios = {
        "pruned_macs_reduction": round(base["macs"] / pruned["macs"], 2),
        "pruned_speedup_b32": round(base["latency_b32_p50_ms"] / pruned["latency_b32_p50_ms"], 2),
        "pruned_speedup_b1": round(base["latency_b1_p50_ms"] / pruned["latency_b1_p50_ms"], 2),
        "pruned_accuracy_drop_points": round(100 * (base["accuracy"] - pruned["accuracy"]), 2),
        "int8_size_reduction_vs_folded": round(
            run["metrics.finetuned.folded_size_bytes"] / int8["size_bytes"], 2),
        "int8_speedup_b32_vs_folded": round(folded_b32 / int8["latency_b32_p50_ms"], 2),
        "int8_accuracy_drop_points": round(100 * (base["accuracy"] - int8["accuracy"]), 2),
        "student_param_reduction": round(base["params"] / student["params"], 2),
        "student_accuracy_drop_points": round(100 * (base["accuracy"] - student["accuracy"]), 2),
        "distillation_gain_points": round(100 * (student["accuracy"] - alone), 2),
    }
    print(ratios, flush=True)
    columns = ["accuracy", "macs", "params", "size_bytes", "latency_b1_p50_ms",
               "latency_b32_p50_ms", "method"]
    variants = report.set_index("variant")[columns].round(5).to_dict(orient="index")
    variants["finetuned, BN folded"] = {
        "latency_b32_p50_ms": round(folded_b32, 5),
        "latency_b1_p50_ms": round(run["metrics.finetuned.folded_latency_b1_ms"], 5),
        "size_bytes": run["metrics.finetuned.folded_size_bytes"]}
    variants["student without teacher"] = {"accuracy": round(alone, 5)}
    name = "compression_cifar10" if args.env == "cifar10" else "compression_digits"
    path = write_result(name, {
        "command": f"python -m benchmarks.compression --env {args.env}",
        "pipeline": f"kedro run --env={args.env} --pipelines=compress,explain,evaluate",
        "compress": compress.model_dump(mode="json"),
        "test_images": int(base["test_images"]), "variants": variants, "ratios": ratios,
        "goals": GOALS,
    })
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
