"""LoRA fine-tuning of the Vision Transformer through Kedro and kedro-mlflow, then
compression of the merged model (tiny digits, a tiny ViT)."""

from __future__ import annotations

import importlib

import mlflow
import pytest
import torch

from model_lifecycle.errors import LifecycleError
from model_lifecycle.io import LoraAdapterDataset, TorchModelDataset
from tests.pipelines.test_ingest_augment_run import _runs
from tests.pipelines.test_pretrain_finetune_run import TINY

VIT = {"depth": 2, "width": 16, "heads": 2, "mlp_dim": 32}
LORA = {**TINY, "finetune": {**TINY["finetune"], "init": "scratch", "arch": "vit",
                             "arch_kwargs": VIT, "strategy": "lora", "epochs": 2,
                             "lora": {"rank": 2}},
        "compress": {**TINY["compress"],
                     "prune": {"method": "unstructured", "structured": None,
                               "unstructured": {"amount": 0.5},
                               "recovery": {"epochs_per_step": 1, "final_epochs": 1}}}}


def _latest(work, name):
    return sorted((work / "data" / "06_models" / name).glob(f"*/{name}"))[-1]


def test_lora_on_the_vit_saves_the_adapter_and_a_plain_merged_model(project):
    project(["ingest", "augment", "finetune", "compress"], LORA)
    adapter = LoraAdapterDataset(filepath=str(_latest(project.work,
                                                      "lora_adapter.safetensors"))).load()
    meta = adapter["metadata"]
    assert meta["strategy"] == "lora" and meta["rank"] == 2
    assert meta["target_modules"] == ["self_attention", "mlp.0", "mlp.3"]
    assert meta["base"]["arch"] == "vit" and meta["base"]["image_size"] == 8  # the digits' size
    assert all("lora_" in k or k.startswith("head.") for k in adapter["tensors"])
    model = TorchModelDataset(filepath=str(_latest(project.work, "finetuned_model.pt"))).load()
    assert model.spec["arch"] == "vit"
    assert not any("lora_" in k for k in model.state_dict())  # merged: a plain Classifier
    assert model(torch.rand(2, 1, 8, 8)).shape == (2, 10)
    # the adapter is a small share of the model file
    assert _latest(project.work, "lora_adapter.safetensors").stat().st_size \
        < _latest(project.work, "finetuned_model.pt").stat().st_size / 2
    run = _runs(project.work).iloc[-1]
    assert run["status"] == "FINISHED"
    assert 0 < run["metrics.finetune.trainable_params"] \
        < 0.5 * run["metrics.finetune.total_params"]
    assert run["params.finetune.strategy"] == "lora"
    artifacts = {a.path for a in mlflow.MlflowClient().list_artifacts(run["run_id"],
                                                                      "finetune")}
    assert "finetune/lora_adapter.safetensors" in artifacts
    for variant in ("pruned_model.pt", "quantized_model.pt", "distilled_model.pt"):
        assert _latest(project.work, variant).exists()  # compression ran on the merged ViT
    quantized = TorchModelDataset(filepath=str(_latest(project.work,
                                                       "quantized_model.pt"))).load()
    assert quantized(torch.rand(2, 1, 8, 8)).shape == (2, 10)


def test_a_full_fine_tune_writes_an_adapter_without_tensors(project):
    scratch = {**TINY, "finetune": {**TINY["finetune"], "init": "scratch", "epochs": 1}}
    project(["ingest", "augment", "finetune"], scratch)
    adapter = LoraAdapterDataset(filepath=str(_latest(project.work,
                                                      "lora_adapter.safetensors"))).load()
    assert adapter == {"metadata": {"strategy": "full"}, "tensors": {}}


def test_bad_lora_targets_and_structured_pruning_of_a_vit_stop_before_training(project):
    bad = {**LORA, "finetune": {**LORA["finetune"], "lora": {"target_modules": ["qkv"]}}}
    with pytest.raises(LifecycleError, match=r"pattern 'qkv' matches no convolution, linear "
                       r"or attention layer of 'vit'"):
        project(["ingest", "augment", "finetune"], bad)
    assert not (project.work / "data" / "03_primary").exists() or \
        not any((project.work / "data" / "03_primary").rglob("*.npz"))  # nothing ran
    structured = {**LORA, "compress": TINY["compress"]}
    # in a run that would train first, before anything runs
    with pytest.raises(LifecycleError, match=r"^compress.prune.method is structured, which "
                       r"cannot shrink the attention layers of 'vit': set "
                       r"compress.prune.method: unstructured and "
                       r"compress.prune.structured: null for a transformer\.$"):
        project(["ingest", "augment", "finetune", "compress"], structured)
    assert not any((project.work / "data").rglob("*.npz"))
    project(["ingest", "augment", "finetune"], structured)
    with pytest.raises(LifecycleError, match=r"Structured pruning cannot shrink the attention "
                       r"layers of 'vit': set compress.prune.method: unstructured"):
        project(["compress"], structured)


@pytest.mark.parametrize(("pipelines", "pretrained_arch", "refused"), [
    (["finetune"], None, False),  # an earlier run's encoder: the node checks it
    (["pretrain", "finetune"], "small_cnn", True),
    (["pretrain", "finetune"], "vit", False),
    (["transfer"], "small_cnn", True),  # the encoder of source.pretrain
    (["transfer"], "vit", False),
])
def test_lora_targets_are_checked_on_the_encoder_this_run_pretrains(pipelines,
                                                                    pretrained_arch, refused):
    from model_lifecycle.hooks import _check_lora_targets  # noqa: PLC0415
    from model_lifecycle.training.config import FinetuneParams, PretrainParams  # noqa: PLC0415

    made = [importlib.import_module(f"model_lifecycle.pipelines.{name}").create_pipeline()
            for name in pipelines]
    pipeline = sum(made[1:], made[0])
    group = "source.pretrain" if pipelines == ["transfer"] else "pretrain"
    groups = {"finetune": FinetuneParams(strategy="lora", lora={"target_modules": ["mlp.0"]}),
              # the configured pretrain group, which no node of a transfer run reads
              "pretrain": PretrainParams(arch="small_cnn")}
    if pretrained_arch:
        groups[group] = PretrainParams(arch=pretrained_arch)
    if refused:
        with pytest.raises(LifecycleError, match=r"pattern 'mlp.0' matches no .* 'small_cnn'"):
            _check_lora_targets(groups, pipeline)
    else:
        _check_lora_targets(groups, pipeline)
