"""The GPU recipe (``--env=cifar10_gpu``): it carries every group of the CIFAR-10 recipe,
differs from it only where the GPU recipe says so, and runs ``ingest,augment,finetune``
through Kedro on the CPU at tiny scale with its own runtime switches (compiled
training, images resident on the device) left on."""

from __future__ import annotations

from pathlib import Path

import mlflow
import pytest
import torch

from model_lifecycle.io import TorchModelDataset
from tests.conftest import THREADS, project_runner, scratch_project
from tests.pipelines.test_lifecycle_run import _versions
from tests.test_conf_envs import CONF, _config

GPU_GROUPS = {"finetune", "pretrain", "runtime", "fewshot"}  # the groups it tunes


def _groups(env: str) -> set[str]:
    return {p.stem.removeprefix("parameters_") for p in (CONF / env).glob("parameters_*.yml")}


def test_the_gpu_environment_holds_every_group_of_the_cifar10_recipe():
    assert _groups("cifar10_gpu") == _groups("cifar10")
    gpu, cpu = _config("cifar10_gpu")["parameters"], _config("cifar10")["parameters"]
    for group in _groups("cifar10") - GPU_GROUPS:  # accuracy compares with the CPU runs
        assert gpu[group] == cpu[group], group
    runtime = gpu["runtime"]
    assert runtime["device"] == "cuda"
    assert runtime["compile"] and runtime["data_on_device"] and runtime["tf32"]
    assert runtime["mixed_precision"]
    finetune = gpu["finetune"]
    assert finetune["budget_seconds"] is None and finetune["epochs"] >= 10  # fixed epochs
    assert finetune["batch_size"] == 1024 and finetune["arch_kwargs"] == {"width": 1.0}
    assert finetune["whiten_stem"] and not finetune["dirac_convs"]  # measured: docs/gpu.md
    assert finetune["flip_tta"] and finetune["shift_tta"] == 1
    assert finetune["label_smoothing"] == 0.2
    assert gpu["fewshot"]["arch_kwargs"] == finetune["arch_kwargs"] == \
        gpu["pretrain"]["arch_kwargs"]


def test_the_gpu_recipe_trains_through_kedro_on_the_cpu_at_tiny_scale(cifar_dir: Path,
                                                                      tmp_path, monkeypatch):
    # Inductor's C++ code generation would take a minute of the 2-core CI: the compiled
    # steps run through TorchDynamo and AOTAutograd with the eager backend instead
    # (tests/training/test_gpu_runtime.py checks they train to the eager result).
    compiled = []
    real_compile = torch.compile

    def compile_for_test(module, **kwargs):
        compiled.append(type(module).__name__)
        return real_compile(module, backend="aot_eager", **kwargs)

    monkeypatch.setattr(torch, "compile", compile_for_test)
    torch._dynamo.reset()
    work = scratch_project(tmp_path / "work")
    monkeypatch.chdir(work)
    run = project_runner(work)
    # the recipe as it is, on the CPU, with sizes a test can afford
    tiny = {"ingest": {"path": str(cifar_dir), "splits": {"val": 0.25}},
            "finetune": {"epochs": 2, "batch_size": 16},
            "runtime": {"device": "cpu", "num_threads": THREADS}}
    run(["ingest", "augment", "finetune"], tiny, env="cifar10_gpu")

    mlflow.set_tracking_uri(f"sqlite:///{work / 'mlflow.db'}")
    [result] = mlflow.search_runs(experiment_names=["model-lifecycle"]).to_dict("records")
    assert result["status"] == "FINISHED"
    assert result["params.runtime.compile"] == "True"
    assert result["params.runtime.data_on_device"] == "True"
    assert result["params.finetune.dirac_convs"] == "False"
    assert result["metrics.finetune.epochs"] == 2.0  # fixed epochs, no budget
    assert 0 <= result["metrics.finetune.test_accuracy"] <= 1
    assert compiled == ["Classifier"]  # the model, compiled once for its training steps
    [saved] = _versions(work, "data/06_models/finetuned_model.pt")
    model = TorchModelDataset(filepath=str(saved)).load()
    stem = next(m for m in model.modules() if isinstance(m, torch.nn.Conv2d))
    assert stem.out_channels == 48 and model.num_classes == 10  # fast_cnn at width 1.0
    with torch.no_grad():
        assert model.eval()(torch.rand(2, 3, 32, 32)).shape == (2, 10)


@pytest.mark.skipif(torch.cuda.is_available(), reason="a CUDA device is visible")
def test_the_gpu_recipe_without_a_gpu_stops_before_anything_runs(cifar_dir: Path, tmp_path,
                                                           monkeypatch):
    from model_lifecycle.errors import LifecycleError  # noqa: PLC0415

    work = scratch_project(tmp_path / "work")
    monkeypatch.chdir(work)
    run = project_runner(work)
    with pytest.raises(LifecycleError, match="runtime.device is 'cuda' but no CUDA device"):
        run(["ingest", "augment", "finetune"],
            {"ingest": {"path": str(cifar_dir)}}, env="cifar10_gpu")
    assert not (work / "data" / "03_primary" / "images.npz").exists()  # before anything ran
