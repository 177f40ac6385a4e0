"""``pretrain`` and ``finetune`` through Kedro and kedro-mlflow, on tiny digits and tiny models."""

from __future__ import annotations

import mlflow
import pytest
import torch

from model_lifecycle.errors import LifecycleError
from model_lifecycle.io import TorchModelDataset
from tests.pipelines.test_ingest_augment_run import _runs, _versions

TINY = {
    "ingest": {"image_size": 8, "labeled_fraction": 0.3},
    "pretrain": {"arch_kwargs": {"width": 4}, "epochs": 2, "batch_size": 128, "eval_every": 1,
                 "hidden_dim": 32, "projection_dim": 16},
    "finetune": {"epochs": 3, "batch_size": 64},
    "runtime": {"num_threads": 2},
    "compress": {"prune": {"recovery_epochs": 1, "final_epochs": 1, "steps": 2},
                 "distill": {"epochs": 2, "student_kwargs": {"width": 1}},
                 "quantize": {"calibration_batches": 2},
                 "latency": {"repeats": 3, "warmup": 1}},
}


def test_default_lifecycle_on_tiny_data(project):
    project(None, TINY)  # __default__: ingest → augment → pretrain → finetune → compress
    work = project.work
    [encoder_file] = _versions(work, "data/06_models/pretrained_encoder.pt")
    [model_file] = _versions(work, "data/06_models/finetuned_model.pt")
    encoder = TorchModelDataset(filepath=str(encoder_file)).load()
    model = TorchModelDataset(filepath=str(model_file)).load()
    assert model.spec["arch"] == encoder.spec["arch"] == "small_cnn"
    x = torch.rand(2, 1, 8, 8)
    assert not torch.equal(model.features(x), encoder.features(x))  # fine-tuned further

    run = _runs(work).iloc[0]
    assert run["status"] == "FINISHED"
    assert run["params.pretrain.method"] == "simclr"
    assert run["params.runtime.device"] == "auto"
    client = mlflow.MlflowClient()
    losses = client.get_metric_history(run["run_id"], "pretrain.train_loss")
    assert [m.step for m in losses] == [0, 1]
    knn = client.get_metric_history(run["run_id"], "pretrain.knn_accuracy")
    assert [m.step for m in knn] == [0, 1, 2]  # each epoch, then the final encoder
    val = client.get_metric_history(run["run_id"], "finetune.val_accuracy")
    assert len(val) == 4  # 3 epochs + the final value of the selected model
    assert 0 <= run["metrics.finetune.test_accuracy"] <= 1
    assert 0 <= run["metrics.pretrain.linear_probe_accuracy"] <= 1
    assert run["metrics.finetune.trainable_params"] == run["metrics.finetune.total_params"]
    assert (work / "data/06_models/checkpoints/pretrain.pt").exists()

    # compress: every variant saved, reloadable, and measured
    for name in ("pruned_model", "quantized_model", "distilled_model"):
        [path] = _versions(work, f"data/06_models/{name}.pt")
        assert TorchModelDataset(filepath=str(path)).load()(x).shape == (2, 10), name
    assert run["metrics.pruned.macs_reduction"] >= 2.0
    assert run["metrics.quantized.size_bytes"] < run["metrics.finetuned.size_bytes"]
    assert run["metrics.distilled.params"] < run["metrics.finetuned.params"] / 4
    for variant in ("finetuned", "pruned", "quantized", "distilled"):
        assert run[f"metrics.{variant}.latency_b32_ms"] > 0
        assert 0 <= run[f"metrics.{variant}.test_accuracy"] <= 1


def test_finetune_without_a_pretrained_encoder_names_what_to_do(project):
    project(["ingest", "augment"], TINY)
    with pytest.raises(LifecycleError, match=r"Input 'pretrained_encoder' has never been "
                       r"produced: run `kedro run --pipelines=pretrain` first or set "
                       r"finetune.init: scratch"):
        project(["finetune"], TINY)
    scratch = {**TINY, "finetune": {**TINY["finetune"], "init": "scratch",
                                    "strategy": "linear_probe"}}
    project(["finetune"], scratch)
    run = _runs(project.work).iloc[-1]
    assert run["status"] == "FINISHED"
    assert run["metrics.finetune.trainable_params"] < run["metrics.finetune.total_params"]
