"""``make bench``: run every benchmark, then write ``benchmarks/RESULTS.md`` from the
JSON results (the README quotes that file).

    python -m benchmarks.run_all [--only ingest_cifar10 augment_throughput] [--report-only]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys

from benchmarks.common import RESULTS

# result name → command arguments, in the order they run (compression on CIFAR-10
# compresses the model the budget run trained, in its scratch project)
BENCHMARKS = {
    "ingest_cifar10": ["benchmarks.ingest_cifar10"],
    "augment_throughput": ["benchmarks.augment_throughput"],
    "loop_overhead": ["benchmarks.loop_overhead"],
    "digits_pretraining": ["benchmarks.digits_pretraining"],
    "compression_digits": ["benchmarks.compression", "--env", "base"],
    "default_run": ["benchmarks.default_run"],
    "serving_load": ["benchmarks.serving_load"],
    "cpu_bfloat16": ["benchmarks.cpu_bfloat16"],
    "cifar10_budget": ["benchmarks.cifar10_budget"],
    "cifar10_budget_float32": ["benchmarks.cifar10_budget", "--seeds", "0", "--skip",
                               "article", "knn", "--params", "runtime.cpu_bfloat16=false",
                               "--label", "float32"],
    "cifar10_budget_vit_cifar10": ["benchmarks.cifar10_budget", "--env", "vit_cifar10",
                                   "--seeds", "0"],
    "compression_cifar10": ["benchmarks.compression", "--env", "cifar10"],
    "int8_isa": ["benchmarks.int8_isa"],
    "predict_batch": ["benchmarks.predict_batch"],
    "folder_ten_minutes": ["benchmarks.folder_ten_minutes"],
    "trust_digits": ["benchmarks.trust", "--env", "base"],
    "trust_cifar10": ["benchmarks.trust", "--env", "cifar10"],
    "trust_cifar10_robust": ["benchmarks.trust", "--env", "cifar10", "--robust"],
    "transfer": ["benchmarks.transfer"],
    "lora": ["benchmarks.lora", "--archs", "small_cnn", "--seeds", "0", "1", "2"],
    "lora_vit_digits": ["benchmarks.lora", "--env", "vit_digits", "--archs", "vit",
                        "--seeds", "0"],
    "lora_cifar10_encoder": ["benchmarks.lora", "--encoder", "cifar10", "--archs",
                             "small_cnn", "--seeds", "0", "1", "2"],
    "adaptation": ["benchmarks.adaptation", "--images", "10000", "--sweep-images", "2000"],
    "fewshot": ["benchmarks.fewshot", "--minutes", "4"],
    "fewshot_animals_5min": ["benchmarks.fewshot", "--minutes", "5", "--label", "animals_5min"],
    "fewshot_alternate_classes": ["benchmarks.fewshot", "--minutes", "5", "--novel",
                                  "automobile", "cat", "dog", "horse", "truck", "--label",
                                  "alternate_classes"],
    "fewshot_bounds_alternate_classes": ["benchmarks.fewshot", "--bounds", "--novel",
                                         "automobile", "cat", "dog", "horse", "truck",
                                         "--label", "alternate_classes"],
    "distributed": ["benchmarks.distributed"],
    "memmap": ["benchmarks.memmap_ingest"],
    "tracking_server": ["benchmarks.tracking_server"],
}

# the results below it were measured while other jobs shared the machine's two cores
SHARED_CPU = ("The sections dated 2026-12-01 were measured while other jobs shared the two "
              "cores (those dated later on an idle machine): accuracies, "
              "counts and memory do not depend on that; seconds, speed ratios and the epochs "
              "a time budget bought (the transfer source encoder, few-shot) do, so rerun "
              "those on an idle machine before quoting them as speeds.")


def render() -> str:
    lines = ["# Benchmark results", "",
             "Written by `make bench` (`python -m benchmarks.run_all`); each section names "
             "the command that reproduces it. Medians of repeated runs, measured side by "
             "side in one run on the machine described.", ""]
    ingest = _load("ingest_cifar10")
    if ingest:
        lines += [
            "## Ingest: CIFAR-10 training set, 50,000 JPEGs (ImageFolder)", "",
            f"`{ingest['command']}`", "",
            "| images | median wall time | images/s | peak memory (whole process tree) | goal |",
            "|---:|---:|---:|---:|---|",
            f"| {ingest['images']:,} | {ingest['median_wall_s']} s | "
            f"{ingest['images_per_s']:,} | {ingest['max_peak_rss_gib']} GiB | {ingest['goal']} |",
            "", f"Runs: {ingest['wall_s']} s; {_machine(ingest)}.", ""]
    augment = _load("augment_throughput")
    if augment:
        lines += [
            "## Augmentation throughput: batched tensors vs. PIL in a DataLoader", "",
            f"`{augment['command']}` — {augment['images']:,} CIFAR-10 images "
            f"{augment['image_shape']}, batches of {augment['batch']}, {augment['cores']} cores. "
            f"Baseline: {augment['pil_setup']}. Ours: {augment['batched_setup']}.", "",
            "| policy | PIL + DataLoader (img/s) | batched (img/s) | speed-up |",
            "|---|---:|---:|---:|"]
        for name, row in augment["policies"].items():
            lines.append(f"| {name} | {row['pil_dataloader_img_per_s']:,} | "
                         f"{row['batched_img_per_s']:,} | {row['speedup']}× |")
        lines += ["", f"Goal: {augment['goal']}; {_machine(augment)}.", ""]
    loop = _load("loop_overhead")
    if loop:
        lines += [
            "## Training-loop overhead", "",
            f"`{loop['command']}` — {loop['model']}, {loop['images']:,} images 32×32, "
            f"batch {loop['batch']}, {loop['epochs_per_timing']} epochs per timing.", "",
            "| plain loop (img/s) | project's `fit` (img/s) | overhead | goal |",
            "|---:|---:|---:|---|",
            f"| {loop['plain_img_per_s']:,} | {loop['project_img_per_s']:,} | "
            f"{loop['overhead_percent']}% | {loop['goal']} |", "",
            f"Runs: plain {loop['plain_runs']}, project {loop['project_runs']}; "
            f"{_machine(loop)}.", ""]
    digits = _load("digits_pretraining")
    if digits:
        lines += [
            "## Digits: pretrained + fine-tuned against from scratch", "",
            f"`{digits['command']}` — seeds {digits['seeds']}, images "
            f"{digits['image_size']}, pretraining {digits['pretrain']}, fine-tuning "
            f"{digits['finetune']}; frozen-feature quality {digits['representation']}.", "",
            "| labeled fraction | pretrained (mean) | scratch (mean) | gain (points) |",
            "|---|---:|---:|---:|"]
        for fraction, row in digits["test_accuracy"].items():
            lines.append(f"| {fraction} | {row['pretrained']['mean']:.2%} | "
                         f"{row['scratch']['mean']:.2%} | {row['gain_points']:+} |")
        lines += ["", f"Goal: {digits['goal']}; {_machine(digits)}.", ""]
    cifar = _load("cifar10_budget")
    if cifar:
        project = cifar["project"]
        lines += [
            "## CIFAR-10, 10-minute training budget", "",
            f"`{cifar['command']}` — `kedro run --env=cifar10` on {cifar['train_images']:,} "
            f"training images, {cifar['test_images']:,} held-out test images.", "",
            "| run | test accuracy | epochs | training seconds (warm-up included) "
            "| images/s |", "|---|---:|---:|---:|---:|"]
        for row in project["runs"]:
            lines.append(f"| project, seed {row['seed']} | {row['test_accuracy']:.2%} | "
                         f"{row['epochs']} | {row['train_seconds']} | {row['images_per_s']:,} |")
        lines.append(f"| project, median | **{project['median_test_accuracy']:.2%}** | | | |")
        lines += _float32_rows(_load("cifar10_budget_float32"))
        if "article" in cifar:
            row = cifar["article"]
            dated = f" (measured {row['measured_on']})" if "measured_on" in row else ""
            lines.append(f"| the article's recipe{dated} | {row['test_accuracy']:.2%} | "
                         f"{row['epochs']} | {row['train_seconds']} | |")
        if "pretrained_encoder" in cifar:
            knn = cifar["pretrained_encoder"]
            dated = f", measured {knn['measured_on']}" if "measured_on" in knn else ""
            lines.append(f"| SimCLR encoder, k-NN on val (no labels in training{dated}) | "
                         f"{knn['knn_accuracy']:.2%} | {knn['epochs']} | "
                         f"{knn['train_seconds']} | |")
        lines += ["", f"Goal: {cifar['goal']}; {_machine(cifar)}.", ""]
    bfloat16 = _load("cpu_bfloat16")
    lines += _cpu_bfloat16(bfloat16) if bfloat16 else []
    vit = _load("cifar10_budget_vit_cifar10")
    lines += _vit_budget(vit) if vit else []
    sections = [(_load("cifar10_gpu"), _gpu)] + [
        (_load(f"compression_{name}"), lambda r, d=title: _compression(r, d))
        for name, title in (("digits", "digits"), ("cifar10", "CIFAR-10"))
    ] + [(_load("compression_prune_layout"), _prune_layout),
         (_load("compression_prune_layout_teacher"), _prune_layout),
         (_load("compression_prune_layout_teacher_final_epochs36"), _prune_layout),
         (_load("compression_prune_layout_teacher_flip"), _prune_layout),
         (_load("compression_distill_variant"), _distill_variant),
         (_load("int8_isa"), _int8_isa), (_load("predict_batch"), _predict_batch),
         (_load("default_run"), _default_run),
         (_load("serving_load"), _serving),
         (_load("folder_ten_minutes"), _folder)] + [
        (_load(f"trust_{name}"), lambda r, d=title: _trust(r, d))
        for name, title in (("digits", "digits, the default lifecycle"),
                            ("cifar10", "CIFAR-10"),
                            ("cifar10_robust", "CIFAR-10 with adversarial fine-tuning"))
    ]
    for result, render_section in sections:
        if result:
            lines += render_section(result)
    return "\n".join(lines + _adaptation_and_scale())


def _adaptation_and_scale() -> list[str]:
    shared = [(_load(name), render_section) for name, render_section in (
        ("transfer", _transfer), ("lora", _lora), ("lora_cifar10_encoder", _lora),
        ("lora_vit_digits", _lora),
        ("adaptation", _adaptation),
        ("fewshot", _fewshot), ("fewshot_animals_5min", _fewshot),
        ("fewshot_alternate_classes", _fewshot), ("distributed", _distributed), ("memmap", _memmap),
        ("tracking_server", _tracking_server)) if _load(name)]
    lines = ["## Adaptation and scale", "", SHARED_CPU, ""] if shared else []
    for result, render_section in shared:
        lines += render_section(result)
    return lines


def _float32_rows(float32: dict | None) -> list[str]:
    """The CIFAR-10 recipe's runs without bfloat16 (``cifar10_budget_float32``)."""
    if not float32:
        return []
    given = float32["command"].partition(" --params ")[2].split(" --label")[0]
    return [f"| float32 training (`--params {given}`, "
            f"{float32['date']}), seed {row['seed']} | {row['test_accuracy']:.2%} | "
            f"{row['epochs']} | {row['train_seconds']} | {row['images_per_s']:,} |"
            for row in float32["project"]["runs"]]


def _cpu_bfloat16(result: dict) -> list[str]:
    lines = ["### Training in bfloat16 on the CPU (`runtime.cpu_bfloat16`)", "",
             f"`{result['command']}` — the training loop on each environment's fine-tuning "
             "model and batch size, random images of its shape, float32 and bfloat16 "
             "autocast taking turns; median images/s over the rounds.", "",
             "| environment | model | batch | float32 images/s | bfloat16 images/s | speed-up |",
             "|---|---|---:|---:|---:|---:|"]
    for env, row in result["environments"].items():
        model = row["arch"] + "".join(f" {k}={v}" for k, v in row["arch_kwargs"].items())
        lines.append(f"| {env} | {model}, {'×'.join(map(str, row['image']))} | "
                     f"{row['batch_size']} | {row['images_per_s']['float32']:,} | "
                     f"{row['images_per_s']['bfloat16']:,} | {row['speedup']:.2f}× |")
    note = f" {result['note']}." if result.get("note") else ""
    return lines + ["", f"{_machine(result)}.{note}", ""]


def _gpu(gpu: dict) -> list[str]:
    """Measured on a GPU machine (make bench-gpu), not by make bench."""
    target = gpu["target"]
    selected = gpu.get("selected")
    chosen = ("best by val accuracy: " + ", ".join(f"`{k}={v}`" for k, v in selected.items())
              + "; " if selected else "")
    median = (f"{chosen}median of {gpu['seeds']} seeds: {gpu['median_test_accuracy']:.2%} in "
              f"{gpu['median_train_seconds']} s; " if "median_test_accuracy" in gpu else "")
    lines = [f"## CIFAR-10 on one GPU ({gpu['gpu']})", "",
             f"`{gpu['command']}` — target: {target['test_accuracy']:.0%} test accuracy in "
             f"at most {target['train_seconds']:g} s of training with `{gpu['recipe']}` "
             f"({median}{'met' if gpu['target_met'] else 'not met'}).", "",
             "| run | environment | epochs | val accuracy | test accuracy (TTA) | "
             "training time | images/s |",
             "|---|---|---:|---:|---:|---:|---:|"]
    names = {"gpu_recipe_compiling": "the GPU recipe, first run (compiles)",
             "cpu_recipe": "the CPU recipe on the GPU"}
    for key, row in gpu["runs"].items():
        if key.startswith(("screen", "selected")):
            params = dict(row["params"])
            seed = params.pop("runtime.seed")
            settings = ", ".join(f"`{k}={v}`" for k, v in params.items())
            name = f"{settings or 'as configured'}, seed {seed}"
        elif key.startswith("gpu_recipe_seed"):
            name = f"the GPU recipe, seed {key.removeprefix('gpu_recipe_seed')}"
        elif key.startswith("gpu_recipe_epochs"):
            name = f"the GPU recipe at {key.removeprefix('gpu_recipe_epochs')} epochs"
        else:
            name = names.get(key, key)
        if "error" in row:
            lines.append(f"| {name} | `{row['env']}` | | | failed: {row['error']} | | |")
            continue
        lines.append(f"| {name} | `{row['env']}` | {row['epochs']} | "
                     f"{row['val_accuracy']:.2%} | {row['test_accuracy']:.2%} | "
                     f"{row['train_seconds']} s | "
                     f"{row['images_per_s']:,} |")
    return [*lines, "", f"{_machine(gpu)}.", ""]


def _vit_budget(vit: dict) -> list[str]:
    lines = ["### The Vision Transformer in the same budget", "",
             f"`{vit['command']}` — `kedro run --env=vit_cifar10`, the same images and split.",
             "", "| run | test accuracy | epochs | training seconds (warm-up included) "
             "| images/s |", "|---|---:|---:|---:|---:|"]
    lines += [f"| vit, seed {row['seed']} | {row['test_accuracy']:.2%} | {row['epochs']} | "
              f"{row['train_seconds']} | {row['images_per_s']:,} |"
              for row in vit["project"]["runs"]]
    return [*lines, "", f"{vit['goal'].capitalize()}; {_machine(vit)}.", ""]


def _int8_isa(result: dict) -> list[str]:
    table, ratios = result["latency_ms_median"], result["speedup_at_largest_batch"]
    batches = list(table["ALL"]["float"])
    lines = ["## INT8 on the CPU: which instructions the speed comes from", "",
             f"`{result['command']}` — the {result['environment']} models, 1 thread, "
             f"median ms over {result['rounds']} alternating rounds; oneDNN (PyTorch) "
             "capped by `ONEDNN_MAX_CPU_ISA`; ONNX Runtime's own kernels do not read it. "
             f"CPU: {', '.join(result['cpu_features'])}.", "",
             "| oneDNN allowed | " + " | ".join(
                 f"{m} b{b}" for m in ("float", "fx_int8", "ort_int8") for b in batches)
             + f" | ORT INT8 / FX INT8 speed, b{result['largest_batch']} "
               f"| ORT INT8 / float speed, b{result['largest_batch']} |",
             "|---|" + "---:|" * (3 * len(batches) + 2)]
    for setting, models in table.items():
        lines.append(f"| {setting} | " + " | ".join(
            f"{models[m][b]:.2f}" for m in ("float", "fx_int8", "ort_int8") for b in batches)
            + f" | {ratios[setting]['ort_int8_vs_fx_int8']}× | "
              f"{ratios[setting]['ort_int8_vs_float']}× |")
    return lines + ["", f"Goal: {result['goal']}; {_machine(result)}.", ""]


def _predict_batch(result: dict) -> list[str]:
    table = result["images_per_second"]
    sizes = list(next(iter(table.values())))
    lines = ["## Evaluation throughput: images per forward pass", "",
             f"`{result['command']}` — {result['what']}; `default` is the batch `predict` "
             f"chooses on the CPU ({result['default_batch_on_cpu']}).", "",
             "| variant | " + " | ".join(s if s == "default" else f"batch {s}" for s in sizes)
             + " | default / 512 |", "|---|" + "---:|" * (len(sizes) + 1)]
    for name, rates in table.items():
        lines.append(f"| {name} | " + " | ".join(f"{rates[s]:,}" for s in sizes)
                     + f" | {result['default_over_512'][name]}× |")
    return lines + ["", f"{_machine(result)}.", ""]


def _default_run(result: dict) -> list[str]:
    decision = result["champion"]
    lines = ["## The default lifecycle", "", f"`{result['command']}` from an empty project, "
             f"{len(result['wall_s'])} runs: median **{result['median_wall_s']} s** "
             f"(runs {', '.join(f'{w} s' for w in result['wall_s'])}), peak "
             f"{result['peak_rss_gib']} GiB. Champion: **{decision['champion']}** "
             f"({decision['rule']}; baseline accuracy {decision['baseline_accuracy']:.2%}).",
             "", "| variant | test accuracy | macro F1 | ECE | parameters | MACs | size (KiB) "
             "| latency b1 p50 (ms) | latency b32 p50 (ms) |",
             "|---|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for row in result["evaluation_report"]:
        lines.append(f"| {row['variant']} | {row['accuracy']:.2%} | {row['f1_macro']:.3f} | "
                     f"{row['ece']:.3f} | {row['params'] / 1e3:.0f} k | "
                     f"{row['macs'] / 1e6:.2f} M | {row['size_bytes'] / 1024:.0f} | "
                     f"{row['latency_b1_p50_ms']:.2f} | {row['latency_b32_p50_ms']:.2f} |")
    if "node_seconds_median" in result:
        lines += ["", "Where the time goes (median seconds per node, from the run's "
                  "`seconds.<node>` metrics): outside the nodes (start-up: imports, the MLflow "
                  "store, the catalog; closing the run) "
                  f"{result['startup_seconds_median']}, " + ", ".join(
                      f"{name} {value}" for name, value in result["node_seconds_median"].items()
                      if value >= 0.5) + "; the other nodes under 0.5 s each."]
    return [*lines, "", f"Goal: {result['goal']}; {_machine(result)}.", ""]


def _serving(result: dict) -> list[str]:
    inline = result["in_process"]
    lines = ["## Serving under load: `mlflow models serve` of the digits champion", "",
             f"`{result['command']}` — `{result['server']}`; {result['images']}; client: "
             f"{result['client']}; at most {result['requests_per_cell']:,} requests or "
             f"{result['duration_cap_s']} s per cell.", "",
             "In process (the same registered model's `predict`, one request's images a "
             "call; the faster of a run before and one after the servers): " + ", ".join(
                 f"{batch} image(s) a call **{row['images_per_s']:,.0f} images/s** "
                 f"({row['ms_per_call']} ms a call; before / after: "
                 f"{' / '.join(f'{v:,.0f}' for v in row['images_per_s_before_after'])})"
                 for batch, row in inline.items()) + ".", "",
             "| workers | images/request | concurrency | requests | requests/s | images/s "
             "| p50 (ms) | p95 (ms) | p99 (ms) | vs in process | errors |",
             "|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for workers, cells in result["servers"].items():
        for c in cells:
            capped = " (cap)" if c["stopped_by_duration_cap"] else ""
            lines.append(f"| {workers} | {c['batch']} | {c['concurrency']} | "
                         f"{c['requests']:,}{capped} | {c['requests_per_s']:,.0f} | "
                         f"{c['images_per_s']:,.0f} | {c['p50_ms']} | {c['p95_ms']} | "
                         f"{c['p99_ms']} | {c['vs_in_process']:.0%} | {c['errors']} |")
    checks = "; ".join(
        f"{workers} worker(s): concurrency 8 single images at "
        f"{check.get('c8_single_vs_in_process', float('nan')):.0%} of in process, p99 "
        f"{check.get('c8_single_p99_ms')} ms ({'met' if check.get('c8_single_met') else 'missed'}),"
        f" 64-image requests up to {check.get('b64_best_images_per_s', 0):,.0f} images/s "
        f"({'met' if check.get('b64_met') else 'missed'})"
        for workers, check in result["checks"].items())
    return [*lines, "", f"Goals: {result['goal']}. Measured: {checks}; {_machine(result)}.",
            ""]


def _folder(result: dict) -> list[str]:
    lines = ["## A 10,000-image folder in ten minutes", "",
             f"`{result['command']}` — `{result['pipeline']}` from an empty project, "
             f"{result['images']:,} CIFAR-10 training JPEGs (1,000 per class).", "",
             "| labeled fraction | wall time | peak memory | pretrain / finetune / student "
             "seconds | k-NN | test accuracy per variant | champion |",
             "|---:|---:|---:|---|---:|---|---|"]
    for run in result["runs"]:
        seconds = " / ".join(f"{v:.0f}" for v in run["seconds"].values())
        accuracy = ", ".join(f"{k} {v:.2%}" for k, v in run["test_accuracy"].items())
        lines.append(f"| {run['labeled_fraction']} | {run['wall_s']:.0f} s | "
                     f"{run['peak_rss_gib']} GiB | {seconds} | {run['knn_accuracy']:.2%} | "
                     f"{accuracy} | {run['champion']} |")
    return [*lines, "", f"Goal: {result['goal']}; {_machine(result)}.", ""]


def _compression(result: dict, data: str) -> list[str]:
    lines = [f"## Compression: {data}", "", f"`{result['command']}` (runs "
             f"`{result['pipeline']}`) — {result['test_images']:,} test images; "
             f"{result['compress']['distill']['epochs']:g} epochs of distillation.", "",
             "| variant | test accuracy | MACs | parameters | size (KiB) | latency b1 (ms) "
             "| latency b32 (ms) |", "|---|---:|---:|---:|---:|---:|---:|"]

    def cell(row: dict, key: str, fmt: str, scale: float = 1.0, unit: str = "") -> str:
        return format(row[key] / scale, fmt) + unit if key in row else ""

    for name, row in result["variants"].items():
        lines.append(f"| {name} | {cell(row, 'accuracy', '.2%')} | "
                     f"{cell(row, 'macs', '.2f', 1e6, ' M')} | "
                     f"{cell(row, 'params', '.1f', 1e3, ' k')} | "
                     f"{cell(row, 'size_bytes', '.0f', 1024)} | "
                     f"{cell(row, 'latency_b1_p50_ms', '.3f')} | "
                     f"{cell(row, 'latency_b32_p50_ms', '.2f')} |")
    lines += ["", f"Ratios: {result['ratios']}.", "", f"Goals: {result['goals']}; "
              f"{_machine(result)}.", ""]
    return lines


def _prune_layout(result: dict) -> list[str]:
    ratios = result["prune"]["structured"]["layer_ratios"]
    teacher = result["prune"]["recovery"].get("teacher")
    title = "another pruning layout" + (
        (", recovered with a flip-averaged teacher" if teacher.get("flip")
         else ", recovered with a teacher") if teacher else "")
    lines = [f"### CIFAR-10: {title}", "", f"`{result['command']}` — `layer_ratios` {ratios}"
             + (f", `recovery.teacher` {teacher}" if teacher else "")
             + f", the rest of the environment's pruning and recovery as they are; "
             f"{result['test_images']:,} test images; "
             "latency timed side by side with the environment's `evaluate.latency`.", "",
             "| model | conv widths | test accuracy | MACs reduction | latency b32 (ms) "
             "| speed-up |", "|---|---|---:|---:|---:|---:|"]
    for name, row in result["variants"].items():
        lines.append(f"| {name} | {row['widths']} | {row['accuracy']:.2%} | "
                     f"{row['macs_reduction']:.2f}× | {row['latency_b32_p50_ms']:.2f} | "
                     f"{row['speedup_b32']:.2f}× |")
    return [*lines, "", f"{_machine(result)}.", ""]


def _distill_variant(result: dict) -> list[str]:
    changed = result["command"].split("--distill ", 1)[1]
    return ["### CIFAR-10: another distillation setting", "",
            f"`{result['command']}` — the environment's `compress.distill` with {changed} "
            f"({result['distill']['epochs']:g} epochs, {result['train_seconds']:.0f} s of "
            f"training): student {result['accuracy']['student']:.2%}, teacher "
            f"{result['accuracy']['teacher']:.2%} on {result['test_images']:,} test images "
            f"({result['student_accuracy_drop_points']:.2f} points below).", "",
            f"{_machine(result)}.", ""]


def _trust(result: dict, data: str) -> list[str]:
    lines = [f"## Trust: {data}", "", f"`{result['command']}` (runs `{result['pipeline']}`: "
             f"{result['variants_evaluated']} variants in **{result['explain_evaluate_seconds']} "
             f"s**, start-up included) — clean accuracy on {result['test_images']:,} test "
             f"images; corruptions on a seeded sample of "
             f"{result['corruption_generation']['images']:,}, FGSM and PGD (ε = 8/255, PGD "
             f"10 × 2/255) on "
             f"{min(result.get('attack_images', 500), result['test_images']):,}.", ""]
    if "default_run_seconds" in result:
        lines += [f"The whole default lifecycle first: {result['default_run_seconds']} s.", ""]
    if "robust_training" in result:
        robust = result["robust_training"]
        lines += [f"`{robust['command']}`: {robust['epochs']} epochs in "
                  f"{robust['train_seconds']} s of training ({robust['wall_seconds']} s "
                  f"wall), `finetune.adversarial` = {robust['adversarial']}.", ""]
    lines += ["| variant | clean | corrupted (mean) | relative drop | FGSM | PGD | attack "
              "| explained with | deletion AUC (random) | insertion AUC (random) | drift "
              "(1 − ρ) | top-10% overlap |", "|---|---:|---:|---:|---:|---:|---|---|---:|"
              "---:|---:|---:|"]
    for name, row in result["variants"].items():
        lines.append(
            f"| {name} | {row['accuracy']:.2%} | {row['corruption_accuracy']:.2%} | "
            f"{row['corruption_robust_drop']:.1%} | {row['fgsm_accuracy']:.2%} | "
            f"{row['pgd_accuracy']:.2%} | {row['attack']} | {row['explained_with']} | "
            f"{row['deletion_auc']:.3f} ({row['deletion_random_auc']:.3f}) | "
            f"{row['insertion_auc']:.3f} ({row['insertion_random_auc']:.3f}) | "
            f"{row['attribution_drift']:.3f} | {row['attribution_top_overlap']:.2f} |")
    lines += ["", "Faithfulness of the fine-tuned model's maps (deletion AUC / the random "
              "order's; lower is more faithful):", ""]
    lines += [f"- {method}: {row['deletion_auc']:.3f} / {row['deletion_random_auc']:.3f} = "
              f"**{row['deletion_ratio']:.2f}×**; insertion {row['insertion_auc']:.3f} "
              f"against {row['insertion_random_auc']:.3f}"
              for method, row in result["faithfulness_finetuned"].items()]
    onnx = result.get("onnx")
    if onnx:
        lines += ["", "ONNX (opset 18, ONNX Runtime on the CPU, 1 thread) from the same report: "
                  f"ORT INT8 at batch 32 {onnx['ort_int8_b32_ms']} ms against FX INT8 "
                  f"{onnx['fx_int8_b32_ms']} ms ({onnx['ort_int8_speedup_vs_fx_int8_b32']}×) "
                  f"and PyTorch float {onnx['torch_float_b32_ms']} ms "
                  f"({onnx['ort_int8_speedup_vs_torch_float_b32']}×); top-1 agreement with "
                  f"the float model {onnx['ort_int8_top1_agreement_with_float']:.2%}; file "
                  f"{onnx['int8_file_vs_float_file']}× the float ONNX file. Goals: "
                  f"{onnx['goals']}.", "",
                  "| variant | ONNX top-1 agreement with its source | largest probability "
                  "difference | ORT b1 (ms) | ORT b32 (ms) | file (KiB) |",
                  "|---|---:|---:|---:|---:|---:|"]
        lines += [f"| {name} | {row.get('onnx_top1_agreement', float('nan')):.4f} | "
                  f"{row.get('onnx_max_probability_difference', float('nan')):.2g} | "
                  f"{row['onnx_latency_b1_p50_ms']:.3f} | {row['onnx_latency_b32_p50_ms']:.2f} | "
                  f"{row['onnx_size_bytes'] / 1024:.0f} |"
                  for name, row in onnx["files"].items()]
    generation = result.get("corruption_generation")
    if generation:
        lines += ["", f"Generating the {generation['corruptions']} corruptions × "
                  f"{generation['severities']} severities of {generation['images']:,} test "
                  f"images: {generation['seconds']} s."]
    return [*lines, "", f"Goals: {result['goals']}; {_machine(result)}.", ""]


def _transfer(result: dict) -> list[str]:
    encoder = result["cifar10_encoder"]
    lines = ["### Transfer: a CIFAR-10 SimCLR encoder fine-tuned on the digits", "",
             f"`{result['command']}` — target {result['target']}; source {result['source']}: "
             f"{encoder['epochs']:.2f} epochs in {encoder['train_seconds']:.0f} s, k-NN "
             f"{encoder['knn_accuracy']:.2%} on CIFAR-10 val. Test accuracy, mean of seeds "
             f"{result['seeds']} (each seed: its own split and labeled images).", "",
             "| labeled fraction | scratch | digits SimCLR | CIFAR-10 SimCLR |",
             "|---|---:|---:|---:|"]
    for fraction, row in result["test_accuracy"].items():
        lines.append(f"| {fraction} | {row['scratch']['mean']:.2%} | "
                     f"{row['digits_simclr']['mean']:.2%} | "
                     f"{row['cifar10_simclr']['mean']:.2%} |")
    return [*lines, "", f"{_machine(result)}.", ""]


def _lora(result: dict) -> list[str]:
    seeds = result.get("seeds", [result.get("seed")])
    cifar = "CIFAR-10" in result.get("encoder", "")
    lines = [f"### LoRA against full fine-tuning: {result['environment'].split()[0]}"
             + (", a CIFAR-10 encoder" if cifar else ""), "",
             f"`{result['command']}` — {result['environment']}, seed(s) "
             f"{', '.join(map(str, seeds))}; for each seed both from the same encoder "
             f"({result.get('encoder', 'SimCLR')}), the same epochs.", "",
             "| arch | strategy | seed | trained share | test accuracy | file |",
             "|---|---|---:|---:|---:|---:|"]
    for row in result["rows"]:
        size = row["adapter_file_bytes"] or row["model_file_bytes"]
        what = "adapter" if row["adapter_file_bytes"] else "model"
        lines.append(f"| {row['arch']} | {row['strategy']} | {row.get('seed', seeds[0])} | "
                     f"{row['trainable_share']:.2%} | {row['test_accuracy']:.2%} | "
                     f"{what} {size / 1024:,.0f} KiB |")
    for arch, summary in result.get("summary", {}).items():
        lines += ["", f"{arch}, mean over the seeds: "
                  f"full {summary['full_mean_test_accuracy']:.2%}, "
                  f"LoRA {summary['lora_mean_test_accuracy']:.2%}: "
                  f"{summary['accuracy_gap_points']:+.2f} points of full fine-tuning above LoRA "
                  f"(goal within 2: {'met' if summary['goal_met'] else 'not met'})."]
    return [*lines, "", f"{_machine(result)}.", ""]


def _adaptation(result: dict) -> list[str]:
    error = result["mean_error"]
    lines = ["### Test-time adaptation on the CIFAR-10 corruptions (severity 5)", "",
             f"`{result['command']}` — the CIFAR-10 fine-tuned model, "
             f"{result['corruptions']} corruptions × {result['images_per_stream']:,} test "
             "images, batch 128, reset between streams.", "",
             "| | mean error | |", "|---|---:|---|",
             f"| unadapted | {error['none']:.2%} | |",
             f"| batch-norm re-estimation | {error['bn']:.2%} | "
             f"{result['bn_relative_reduction']:.0%} lower (goal ≥ 30%) |",
             f"| TENT | {error['tent']:.2%} | {result['tent_points_below_bn']:.2f} points "
             "below bn (goal ≥ 1) |", "",
             f"Slowest corruption, all three methods: {result['max_seconds_per_corruption']} s "
             "(goal < 60 s). Batch-size sweep "
             f"({result['batch_size_sweep']['images_per_stream']:,} images per stream):", "",
             "| batch | bn | tent |", "|---:|---:|---:|"]
    for batch, row in result["batch_size_sweep"].items():
        if isinstance(row, dict) and "bn" in row:
            lines.append(f"| {batch} | {row['bn']['mean_error']:.2%} | "
                         f"{row['tent']['mean_error']:.2%} |")
    lines += ["", f"TENT's optimizer ({result['parameters']['optimizer']}, `adapt.optimizer` "
              f"of the environment), learning rate ({result['parameters']['lr']:g}, "
              f"`adapt.lr`), updates per batch ({result['parameters']['steps']}, "
              "`adapt.steps`) and layers ("
              + (", ".join(result["parameters"].get("layers") or []) or "every norm layer")
              + ", `adapt.layers`) were chosen without the test split:"]
    chosen = _load("adaptation_lr")
    if chosen:
        lines += [f"`{chosen['command']}` — {chosen['what']}.", "",
                  "| setting | bn | tent | tent below bn |", "|---|---:|---:|---:|"]
        for setting, row in chosen["mean_error_per_lr"].items():
            name = f"lr {float(setting):g}" if setting[0].isdigit() else setting
            lines.append(f"| {name} | {row['bn']:.2%} | {row['tent']:.2%} | "
                         f"{100 * (row['bn'] - row['tent']):.2f} points |")
    return [*lines, "", f"{_machine(result)}.", ""]


def _fewshot(result: dict) -> list[str]:
    lines = ["### Few-shot on five held-out CIFAR-10 classes", "",
             f"`{result['command']}` — novel {', '.join(result['novel_classes'])}; "
             f"{result['budget_seconds_per_stage']:.0f} s of training per encoder; 5-way "
             "episodes, 15 queries, Prototypical Networks.", "",
             "| encoder | shot | accuracy | ± 95% |", "|---|---:|---:|---:|"]
    for row in result["report"]:
        lines.append(f"| {row['encoder']} | {row['shot']} | {row['accuracy']:.2%} | "
                     f"{row['ci95']:.2%} |")
    lines += ["", f"Goal: {result['goals']}; {_machine(result)}.", ""]
    # the bounds of the same split (``--bounds`` with the same ``--label``)
    bounds = _load(result["benchmark"].replace("fewshot", "fewshot_bounds", 1))
    if bounds:
        lines += [f"`{bounds['command']}` — {bounds['what']}.", "",
                  "| features | shot | accuracy | ± 95% |", "|---|---:|---:|---:|"]
        lines += [f"| {row['encoder']} | {row['shot']} | {row['accuracy']:.2%} | "
                  f"{row['ci95']:.2%} |" for row in bounds["report"]]
        lines += ["", f"{_machine(bounds)}.", ""]
    return lines


def _distributed(result: dict) -> list[str]:
    lines = ["### Two gloo ranks against one process (same global batch)", "",
             f"`{result['command']}` — {result['scaling_efficiency']}.", "",
             "| data | one process | two ranks | difference | identical weights | "
             "runs / versions per run | efficiency (loop) |",
             "|---|---:|---:|---:|---|---|---:|"]
    for name in ("digits", "cifar10"):
        if name in result:
            row = result[name]["summary"]
            lines.append(
                f"| {name} | {row['mean_test_accuracy_one_process']:.2%} | "
                f"{row['mean_test_accuracy_two_ranks']:.2%} | "
                f"{row['mean_difference_points']:+.2f} | "
                f"{'yes' if row['weights_identical_on_every_rank'] else 'no'} | "
                f"{'1 / 1' if row['one_mlflow_run_per_kedro_run'] else 'no'} | "
                f"{row['scaling_efficiency_train']} |")
    return [*lines, "", f"Goal: {result['goal']}. {result['contention']}; "
            f"{_machine(result)}.", ""]


def _memmap(result: dict) -> list[str]:
    lines = ["### Memory-mapped ingest", "", f"`{result['command']}` — {result['source']}.", "",
             "| images | wall | µs per image | peak memory (tree) | pixels |",
             "|---:|---:|---:|---:|---:|"]
    for row in result["ingest"]:
        lines.append(f"| {row['images']:,} | {row['wall_s']} s | {row['us_per_image']} | "
                     f"{row['peak_tree_rss_gib']} GiB | {row['pixel_gib']} GiB |")
    training = result["training"]
    lines += ["", f"Training from the map against in memory ({training['images']:,} images, "
              f"{training['model']}, medians): {training['median_images_per_s']['memmap']} "
              f"against {training['median_images_per_s']['memory']} images/s "
              f"({training['memmap_over_memory']:.2f}×). {_machine(result)}.", ""]
    return lines


def _tracking_server(result: dict) -> list[str]:
    runs = result["concurrent_runs"]["runs"]
    timing = result["default_run"]
    lines = ["### The PostgreSQL tracking server", "", f"`{result['command']}` — "
             f"{result['goal']}.", "",
             "| run at once | status | metric points logged | rows in PostgreSQL | "
             "versions |", "|---|---|---:|---:|---:|"]
    for i, run in enumerate(runs, 1):
        lines.append(f"| {i} | {run['status']} | {run['metric_points_logged']:,} | "
                     f"{run['metric_rows_in_postgres']:,} | {len(run['registered_versions'])} |")
    lines += ["", f"Default run, median wall time: SQLite {timing['median_wall_s']['sqlite']} s, "
              f"server {timing['median_wall_s']['server']} s ({timing['server_over_sqlite']}×, "
              f"{timing['repeats_done']} pair(s)). {result.get('note', '')} "
              f"{_machine(result)}.", ""]
    return lines


def _load(name: str) -> dict | None:
    path = RESULTS / f"{name}.json"
    return json.loads(path.read_text()) if path.exists() else None


def _machine(result: dict) -> str:
    m = result["machine"]
    cpu = m["processor"] if not m.get("cpu") else f"{m['cpu']}, {m['processor']}"
    if m.get("bfloat16_instructions") is not None:
        cpu += ", bfloat16 instructions" if m["bfloat16_instructions"] else \
            ", no bfloat16 instructions"
    return (f"measured {result['date']} on {m['cpus']} CPU cores ({cpu}), "
            f"Python {m['python']}, torch {m['torch']}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", nargs="*", default=list(BENCHMARKS), choices=list(BENCHMARKS))
    parser.add_argument("--report-only", action="store_true")
    args = parser.parse_args()
    if not args.report_only:
        for name in args.only:
            subprocess.run([sys.executable, "-m", *BENCHMARKS[name]], check=True)
    (RESULTS.parent / "RESULTS.md").write_text(render())
    print(f"wrote {RESULTS.parent / 'RESULTS.md'}")


if __name__ == "__main__":
    main()
