"""Helpers shared by the benchmarks: data location, timing, peak memory, result files."""

from __future__ import annotations

import json
import logging
import os
import platform
import shutil
import subprocess
import sys
import tarfile
import threading
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

RESULTS = Path(__file__).parent / "results"
PROJECT_ROOT = Path(__file__).resolve().parents[1]
SHARED_CIFAR = Path(__file__).resolve().parents[2] / "shared/datasets/cifar10-train-jpg.tar.gz"
DEFAULT_WORK = Path(os.environ.get("MODEL_LIFECYCLE_BENCH_DIR", "/tmp/model-lifecycle-bench"))


def show_progress() -> None:
    """The library's progress (epochs, streams, budgets) on stderr, for a benchmark that
    calls library functions outside ``kedro run`` (which sets up logging itself)."""
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")


def cifar_jpeg_folder(archive: Path = SHARED_CIFAR, work: Path = DEFAULT_WORK) -> Path:
    """Extract the CIFAR-10 JPEG tarball once (outside the repository) and return its root."""
    root = work / "cifar10-jpg"
    if not (root / ".complete").exists():
        if not archive.exists():
            raise SystemExit(f"{archive} not found: pass --archive with the CIFAR-10 JPEG tarball")
        root.mkdir(parents=True, exist_ok=True)
        with tarfile.open(archive) as tar:
            tar.extractall(root, filter="data")
        (root / ".complete").touch()
    return root


def class_subset(source: Path, target: Path, per_class: int) -> Path:
    """``per_class`` JPEGs of every class of ``source`` (``<root>/train/<class>/``), drawn
    with seed 0, copied once to ``target/<class>/``."""
    if (target / ".complete").exists():
        return target
    shutil.rmtree(target, ignore_errors=True)
    rng = np.random.default_rng(0)
    for folder in sorted((source / "train").iterdir()):
        files = sorted(folder.iterdir())
        (target / folder.name).mkdir(parents=True)
        for index in np.sort(rng.choice(len(files), per_class, replace=False)):
            shutil.copy(files[index], target / folder.name / files[index].name)
    (target / ".complete").touch()
    return target


def _tree_rss(pid: int) -> int:
    """Resident bytes of ``pid`` and all its descendants (from /proc)."""
    total, stack = 0, [pid]
    while stack:
        current = stack.pop()
        try:
            with open(f"/proc/{current}/status") as status:
                for line in status:
                    if line.startswith("VmRSS:"):
                        total += int(line.split()[1]) * 1024
            for task in os.listdir(f"/proc/{current}/task"):
                with open(f"/proc/{current}/task/{task}/children") as children:
                    stack += [int(child) for child in children.read().split()]
        except (FileNotFoundError, ProcessLookupError, PermissionError):
            continue
    return total


def run_measured(cmd: list[str], *, cwd: Path, env: dict[str, str] | None = None
                 ) -> tuple[float, int]:
    """Run ``cmd``; return (wall seconds, peak RSS in bytes of its whole process tree)."""
    start = time.perf_counter()
    process = subprocess.Popen(cmd, cwd=cwd, env={**os.environ, **(env or {})},
                               stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    peak = 0
    done = threading.Event()

    def sample() -> None:
        nonlocal peak
        while not done.is_set():
            peak = max(peak, _tree_rss(process.pid))
            time.sleep(0.02)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    output, _ = process.communicate()
    wall = time.perf_counter() - start
    done.set()
    sampler.join()
    if process.returncode != 0:
        raise SystemExit(f"{' '.join(cmd)} failed:\n{output[-3000:]}")
    return wall, peak


def machine() -> dict[str, Any]:
    from model_lifecycle.training.device import cpu_bfloat16  # noqa: PLC0415

    return {"cpus": os.cpu_count(), "torch_threads": torch.get_num_threads(),
            "python": platform.python_version(), "torch": torch.__version__,
            "processor": platform.processor() or platform.machine(),
            "cpu": _cpu_name(), "bfloat16_instructions": cpu_bfloat16()}


def _cpu_name() -> str:
    """The CPU's model name with its family and model numbers (Linux), e.g. "AMD EPYC
    (family 26, model 2)": a virtual machine often names only the vendor, and the
    numbers tell its generations apart (AMD family 25 is Zen 3/4, 26 is Zen 5); ""
    where it cannot be read."""
    try:
        lines = Path("/proc/cpuinfo").read_text().splitlines()
    except OSError:
        return ""
    fields: dict[str, str] = {}
    for line in lines:
        if not line.strip():
            break  # the first processor's block is enough
        key, _, value = line.partition(":")
        fields.setdefault(key.strip(), value.strip())
    name = fields.get("model name", "")
    if name and "cpu family" in fields and "model" in fields:
        name += f" (family {fields['cpu family']}, model {fields['model']})"
    return name


def write_result(name: str, result: dict[str, Any]) -> Path:
    RESULTS.mkdir(exist_ok=True)
    path = RESULTS / f"{name}.json"
    result = {"benchmark": name, "date": time.strftime("%Y-%m-%d"), "machine": machine(),
              **result}
    path.write_text(json.dumps(result, indent=2) + "\n")
    return path


def scratch_project(work: Path) -> Path:
    """A fresh copy of the project's configuration in ``work/project``, whose data and
    MLflow store live there (outside the repository)."""
    project = work / "project"
    shutil.rmtree(project, ignore_errors=True)
    shutil.copytree(PROJECT_ROOT / "conf", project / "conf",
                    ignore=shutil.ignore_patterns("local"))
    (project / "conf" / "local").mkdir()
    (project / "conf" / "local" / "mlflow.yml").write_text(
        f"server:\n  mlflow_tracking_uri: sqlite:///{project}/mlflow.db\n"
        f"  mlflow_registry_uri: sqlite:///{project}/mlflow.db\n")
    shutil.copy(PROJECT_ROOT / "pyproject.toml", project)
    shutil.copy(PROJECT_ROOT / ".telemetry", project)
    (project / "src").mkdir()
    return project


def refresh_conf(project: Path) -> None:
    """Replace a kept scratch project's configuration with the repository's (its
    ``conf/local`` stays: it points at the project's own MLflow store)."""
    for path in (project / "conf").iterdir():
        if path.name != "local":
            shutil.rmtree(path)
    shutil.copytree(PROJECT_ROOT / "conf", project / "conf", dirs_exist_ok=True,
                    ignore=shutil.ignore_patterns("local"))


KEDRO_ENV = {"DO_NOT_TRACK": "1", "KEDRO_DISABLE_TELEMETRY": "true",
             "MLFLOW_DISABLE_TELEMETRY": "true", "MPLBACKEND": "Agg"}


def kedro_run(project: Path, *args: str, params: dict[str, Any] | None = None) -> dict[str, Any]:
    """``kedro run <args> --params k=v,…`` in ``project`` as a user would (a subprocess,
    output streamed); returns that run's MLflow record (``params.*``, ``metrics.*``)."""
    command = [sys.executable, "-m", "kedro", "run", *args]
    if params:
        command += ["--params", ",".join(f"{k}={_yaml(v)}" for k, v in params.items())]
    print("$", " ".join(command[2:]), flush=True)
    subprocess.run(command, cwd=project, env={**os.environ, **KEDRO_ENV}, check=True)
    return latest_run(project)


def _yaml(value: Any) -> str:
    """A --params value as YAML reads it (Kedro parses them as YAML)."""
    return "null" if value is None else str(value).lower() if isinstance(value, bool) \
        else str(value)


def latest_run(project: Path) -> dict[str, Any]:
    """The newest MLflow run of the project's store, as a flat dict."""
    import mlflow  # noqa: PLC0415

    mlflow.set_tracking_uri(f"sqlite:///{project}/mlflow.db")
    runs = mlflow.search_runs(experiment_names=["model-lifecycle"],
                              order_by=["start_time DESC"], max_results=1)
    return runs.iloc[0].to_dict()


def latest_version(project: Path, relative: str, *, missing_ok: bool = False) -> Path | None:
    """The newest version of a versioned catalog file, e.g. ``data/03_primary/images.npz``
    (``missing_ok``: ``None`` where there is none)."""
    versions = sorted((project / relative).glob(f"*/{Path(relative).name}"))
    if not versions and missing_ok:
        return None
    return versions[-1]


def load_latest(project: Path, dataset: str, env: str = "base") -> Any:
    """The newest version of catalog entry ``dataset`` of the scratch ``project``, read
    with the dataset class its catalog (``env`` over ``base``) names."""
    from kedro.config import OmegaConfigLoader  # noqa: PLC0415
    from kedro.io import AbstractDataset  # noqa: PLC0415

    entry = OmegaConfigLoader(str(project / "conf"), base_env="base",
                              default_run_env=env)["catalog"][dataset]
    return AbstractDataset.from_config(
        dataset, {**entry, "filepath": str(project / entry["filepath"])}).load()


def conf_parameters(env: str = "base") -> dict[str, Any]:
    """Every parameter group of a conf/ environment, read by Kedro's own config loader
    (``base`` overridden by ``env``, as ``kedro run --env=<env>`` sees them)."""
    from kedro.config import OmegaConfigLoader  # noqa: PLC0415

    return OmegaConfigLoader(str(PROJECT_ROOT / "conf"), base_env="base",
                             default_run_env=env)["parameters"]
