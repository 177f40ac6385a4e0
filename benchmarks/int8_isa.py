"""Where the INT8 speed comes from: PyTorch float, PyTorch FX INT8 and ONNX Runtime INT8
latency of the CIFAR-10 models, with oneDNN (PyTorch's CPU kernels) allowed every
instruction set of this CPU, then capped below AMX (``AVX512_CORE_VNNI``) and below
AVX-512 (``AVX2``) through its documented ``ONEDNN_MAX_CPU_ISA`` variable.

ONNX Runtime's INT8 convolutions are MLAS kernels, which the variable does not reach;
its figures in every round are the control. Each setting runs in its own process (oneDNN
reads the variable once, at its first kernel), the settings alternate over ``--rounds``
rounds, and each figure is the median over rounds of ``cost.cpu_latency_ms`` /
``onnx.onnx_latencies_ms`` medians (the evaluation report's functions, with the
environment's ``evaluate.latency`` settings: threads, warm-up, repeats, channels-last).

The models are the ones ``benchmarks.compression --env cifar10`` left in the CIFAR-10
scratch project (run ``benchmarks.cifar10_budget`` and that first).

    python -m benchmarks.int8_isa [--rounds 3]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
from pathlib import Path

from benchmarks.common import DEFAULT_WORK, conf_parameters, latest_version, write_result

SETTINGS = ("ALL", "AVX512_CORE_VNNI", "AVX2")
MODELS = {"float": "finetuned_model.pt", "fx_int8": "quantized_model.pt",
          "ort_int8": "onnx_int8_model.onnx"}
GOAL = ("ONNX Runtime INT8 at batch 32 at least as fast as the PyTorch FX INT8 model "
        "and >= 2.5x faster than PyTorch float")


def measure(project: Path, env: str) -> dict[str, dict[int, float]]:
    """Median latency (ms) of each model at each batch size, in this process."""
    import numpy as np  # noqa: PLC0415
    import torch  # noqa: PLC0415

    from model_lifecycle.compression.onnx import onnx_latencies_ms  # noqa: PLC0415
    from model_lifecycle.evaluation.config import LatencyParams  # noqa: PLC0415
    from model_lifecycle.evaluation.cost import latencies_ms  # noqa: PLC0415
    from model_lifecycle.io import ImageSetDataset, TorchModelDataset  # noqa: PLC0415
    from model_lifecycle.params import parse_params  # noqa: PLC0415

    params = parse_params(LatencyParams, conf_parameters(env)["evaluate"]["latency"],
                          "evaluate.latency")
    images = ImageSetDataset(filepath=str(latest_version(
        project, "data/03_primary/images.npz"))).load()
    example = torch.from_numpy(np.ascontiguousarray(images.images[:1])).float() / 255
    out = {}
    for name in ("float", "fx_int8"):
        model = TorchModelDataset(filepath=str(latest_version(
            project, f"data/06_models/{MODELS[name]}"))).load()
        out[name] = {b: t["median"] for b, t in latencies_ms(model, example, params).items()}
    onnx_file = latest_version(project, f"data/06_models/{MODELS['ort_int8']}")
    timed = onnx_latencies_ms(onnx_file.read_bytes(), example,
                              batch_sizes=params.batch_sizes, threads=params.threads,
                              warmup=params.warmup, repeats=params.repeats)
    out["ort_int8"] = {b: t["median"] for b, t in timed.items()}
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--work", type=Path, default=DEFAULT_WORK)
    parser.add_argument("--env", default="cifar10")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    project = args.work / args.env / "project"
    if args.worker:
        print(json.dumps(measure(project, args.env)))
        return
    for name in MODELS.values():
        if not list(project.glob(f"data/06_models/{name}/*")):
            raise SystemExit(f"{project} holds no {name}: run python -m "
                             "benchmarks.cifar10_budget, then benchmarks.compression "
                             f"--env {args.env}")
    samples: dict[str, list[dict]] = {s: [] for s in SETTINGS}
    for round_ in range(args.rounds):
        for setting in SETTINGS:
            env = {**os.environ, "ONEDNN_MAX_CPU_ISA": setting}
            done = subprocess.run(
                [sys.executable, "-m", "benchmarks.int8_isa", "--worker", "--env", args.env,
                 "--work", str(args.work)],
                env=env, check=True, capture_output=True, text=True)
            samples[setting].append(json.loads(done.stdout.strip().splitlines()[-1]))
            print(round_, setting, samples[setting][-1], flush=True)

    def median(setting: str, model: str, batch: str) -> float:
        return round(statistics.median(s[model][batch] for s in samples[setting]), 3)

    batches = list(samples[SETTINGS[0]][0]["float"])
    table = {s: {m: {b: median(s, m, b) for b in batches} for m in MODELS} for s in SETTINGS}
    largest = batches[-1]
    ratios = {s: {"ort_int8_vs_fx_int8": round(table[s]["fx_int8"][largest]
                                               / table[s]["ort_int8"][largest], 2),
                  "ort_int8_vs_float": round(table[s]["float"][largest]
                                             / table[s]["ort_int8"][largest], 2),
                  "fx_int8_vs_float": round(table[s]["float"][largest]
                                            / table[s]["fx_int8"][largest], 2)}
              for s in SETTINGS}
    cpu_flags = Path("/proc/cpuinfo").read_text().split() if Path("/proc/cpuinfo").exists() \
        else []
    result = {
        "command": f"python -m benchmarks.int8_isa --rounds {args.rounds}",
        "goal": GOAL,
        "environment": args.env,
        "models": {m: str(latest_version(project, f"data/06_models/{f}").relative_to(project))
                   for m, f in MODELS.items()},
        "cpu_features": sorted({f for f in cpu_flags
                                if f in ("avx2", "avx512f", "avx512_vnni", "avx_vnni",
                                         "amx_int8", "amx_bf16", "amx_tile")}),
        "latency_ms_median": table,
        "speedup_at_largest_batch": ratios,
        "largest_batch": int(largest),
        "rounds": args.rounds,
        "samples": samples,
    }
    print(f"wrote {write_result('int8_isa', result)}")


if __name__ == "__main__":
    main()
