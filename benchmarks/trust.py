"""Trust of every variant, through ``kedro run --pipelines=explain,evaluate``: accuracy
under the generated corruptions, FGSM and PGD accuracy (INT8 by transfer from its
float source), faithfulness of the attributions (deletion and insertion AUC against a
random order) and their drift from the fine-tuned model, and the wall time of the two
stages together. With ``--robust``, first ``kedro run --pipelines=robust`` (adversarial
fine-tuning with the environment's ``finetune.adversarial``), evaluated beside the rest.

Environments:

- ``cifar10``: the variants that ``benchmarks.cifar10_budget`` and ``benchmarks.compression
  --env cifar10`` made (their scratch project is reused: run those first), 10,000 test
  images; the trust settings are ``conf/cifar10``'s.
- ``base``: the embedded digits, ``kedro run`` (the whole default lifecycle) in a
  scratch project.

    python -m benchmarks.trust --env cifar10 [--robust]
    python -m benchmarks.trust --env base
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from benchmarks.common import (
    DEFAULT_WORK,
    conf_parameters,
    kedro_run,
    latest_version,
    refresh_conf,
    scratch_project,
    write_result,
)
from model_lifecycle.io import ImageSetDataset, NpzDataset
from model_lifecycle.trust.config import RobustnessParams
from model_lifecycle.trust.corruptions import corrupt
from model_lifecycle.trust.robustness import seeded_sample

GOALS = ("CIFAR-10: explain + robustness evaluation of 4 variants <= 5 min on 2 cores; "
         "Integrated Gradients' deletion AUC <= 0.6x the random order's on the fine-tuned "
         "model; adversarial fine-tuning within 20 min: PGD-10 accuracy at 8/255 >= 40% "
         "with clean accuracy >= 75%")
COLUMNS = ("accuracy", "corruption_clean_accuracy", "corruption_accuracy",
           "corruption_robust_drop", "fgsm_accuracy", "pgd_accuracy", "attack",
           "explained_with", "deletion_auc", "deletion_random_auc", "insertion_auc",
           "insertion_random_auc", "attribution_drift", "attribution_top_overlap",
           "size_bytes")


def generation_seconds(project: Path, params: RobustnessParams) -> tuple[int, float]:
    """Images in the test sample ``evaluate.robustness`` draws (what evaluate shows each
    variant), and the wall time to generate every corruption at every severity of it."""
    images = ImageSetDataset(filepath=str(latest_version(
        project, "data/03_primary/images.npz"))).load()
    test = NpzDataset(filepath=str(latest_version(
        project, "data/05_model_input/splits.npz"))).load()["test"]
    clean = torch.from_numpy(np.ascontiguousarray(
        images.images[seeded_sample(test, params.images, params.seed)]))
    tic = time.perf_counter()
    for name in params.names():
        for severity in params.severities:
            corrupt(clean, name, severity, seed=params.seed)
    return len(clean), time.perf_counter() - tic


def onnx_summary(rows: pd.DataFrame) -> dict:
    """The deployment figures from the report: each ONNX file's agreement with its
    PyTorch source, ONNX Runtime latency and size, and the INT8 file against PyTorch."""
    onnx = rows.filter(like="onnx_").dropna(how="all").round(5)
    int8, fx, base = rows.loc["onnx_int8"], rows.loc["quantized"], rows.loc["finetuned"]
    return {
        "files": onnx.to_dict(orient="index"),
        "ort_int8_b32_ms": round(int8["onnx_latency_b32_p50_ms"], 3),
        "fx_int8_b32_ms": round(fx["latency_b32_p50_ms"], 3),
        "torch_float_b32_ms": round(base["latency_b32_p50_ms"], 3),
        "ort_int8_speedup_vs_fx_int8_b32": round(
            fx["latency_b32_p50_ms"] / int8["onnx_latency_b32_p50_ms"], 2),
        "ort_int8_speedup_vs_torch_float_b32": round(
            base["latency_b32_p50_ms"] / int8["onnx_latency_b32_p50_ms"], 2),
        "ort_int8_top1_agreement_with_float": round(int8["onnx_top1_agreement"], 4),
        "int8_file_vs_float_file": round(int8["onnx_size_bytes"] / base["onnx_size_bytes"],
                                         3),
        "goals": "ORT INT8 at batch 32 at least as fast as FX INT8 and >= 2.5x faster than "
                 "PyTorch float; top-1 agreement with the float model >= 99%; file <= 0.3x "
                 "the float ONNX file",
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--env", choices=["base", "cifar10"], default="cifar10")
    parser.add_argument("--robust", action="store_true",
                        help="also train and evaluate the adversarially fine-tuned model")
    parser.add_argument("--work", type=Path, default=DEFAULT_WORK)
    args = parser.parse_args()
    env = f"--env={args.env}"
    result: dict = {"environment": args.env, "goals": GOALS}
    if args.env == "cifar10":
        project = args.work / "cifar10" / "project"
        if not list(project.glob("data/06_models/distilled_model.pt/*")):
            raise SystemExit(f"{project} holds no compressed variants: run python -m "
                             "benchmarks.cifar10_budget, then benchmarks.compression "
                             "--env cifar10 first")
        refresh_conf(project)
        if not list(project.glob("data/06_models/onnx_int8_model.onnx/*")):
            # compressed before the ONNX Runtime variant existed: make just that one
            kedro_run(project, env, "--nodes=quantize_onnx_model")
    else:
        project = scratch_project(args.work / "trust_digits")
        tic = time.perf_counter()
        kedro_run(project, env)
        result["default_run_seconds"] = round(time.perf_counter() - tic, 1)
    params = {}
    if args.robust:
        tic = time.perf_counter()
        run = kedro_run(project, env, "--pipelines=robust")
        result["robust_training"] = {
            "command": f"kedro run {env} --pipelines=robust",
            "wall_seconds": round(time.perf_counter() - tic, 1),
            "train_seconds": round(run["metrics.robust.train_seconds"], 1),
            "epochs": round(run["metrics.robust.epochs"], 2),
            "adversarial": conf_parameters(args.env)["finetune"]["adversarial"]}
        params = {"evaluate.include_robust": True}
    tic = time.perf_counter()
    kedro_run(project, env, "--pipelines=explain,evaluate", params=params)
    seconds = time.perf_counter() - tic
    report = pd.read_csv(latest_version(project, "data/08_reporting/evaluation_report.csv"))
    summary = pd.read_csv(latest_version(project,
                                         "data/08_reporting/explanation_summary.csv"))
    rows = report.set_index("variant")
    variants = rows[[c for c in COLUMNS if c in rows]].round(4).to_dict(orient="index")
    baseline = summary[summary.variant == "finetuned"].set_index("method")
    faithfulness = {method: {
        "deletion_auc": round(row.deletion_auc, 4),
        "deletion_random_auc": round(row.deletion_random_auc, 4),
        "deletion_ratio": round(row.deletion_auc / row.deletion_random_auc, 3),
        "insertion_auc": round(row.insertion_auc, 4),
        "insertion_random_auc": round(row.insertion_random_auc, 4)}
        for method, row in baseline.iterrows()}
    drift = summary[summary.variant != "finetuned"][
        ["variant", "method", "drift_spearman", "drift_top_overlap"]].round(4)
    result |= {
        "command": f"python -m benchmarks.trust --env {args.env}"
                   + (" --robust" if args.robust else ""),
        "pipeline": f"kedro run {env} --pipelines=explain,evaluate",
        "explain_evaluate_seconds": round(seconds, 1),
        "variants_evaluated": len(rows),
        "test_images": int(rows.loc["finetuned", "test_images"]),
        "attack_images": conf_parameters(args.env)["evaluate"]["adversarial"]["images"],
        "variants": variants, "faithfulness_finetuned": faithfulness,
        "drift": drift.to_dict(orient="records"),
    }
    robustness = RobustnessParams(**conf_parameters(args.env)["evaluate"]["robustness"])
    count, generation = generation_seconds(project, robustness)
    result["corruption_generation"] = {
        "images": count, "corruptions": len(robustness.names()),
        "severities": len(robustness.severities), "seconds": round(generation, 1)}
    if "onnx_int8" in rows.index:
        result["onnx"] = onnx_summary(rows)
    print(pd.DataFrame(variants).T.to_string(), flush=True)
    name = f"trust_{'cifar10' if args.env == 'cifar10' else 'digits'}"
    print(f"wrote {write_result(name + ('_robust' if args.robust else ''), result)}")


if __name__ == "__main__":
    main()
