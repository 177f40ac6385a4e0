"""``kedro run --pipelines=adapt`` after a tiny fine-tune: the report, the figure and the
adapted model reach the catalog and MLflow; the fine-tuned model's file stays as it was;
bad parameters and a variant never made stop the run before it starts; a variant
trained on other images than the latest, or an empty test split, stops it with one
sentence."""

from __future__ import annotations

import hashlib
from pathlib import Path

import mlflow
import numpy as np
import pandas as pd
import pytest
import torch
from PIL import Image

from model_lifecycle.errors import LifecycleError
from model_lifecycle.io import TorchModelDataset
from model_lifecycle.training.tta import NORMS
from tests.conftest import THREADS
from tests.pipelines.test_ingest_augment_run import _runs

TINY = {
    "ingest": {"image_size": 8, "labeled_fraction": 0.5},
    "finetune": {"init": "scratch", "epochs": 1, "batch_size": 64,
                 "arch_kwargs": {"width": 4}},
    "runtime": {"num_threads": THREADS},
    "adapt": {"corruptions": ["gaussian_noise", "contrast"], "severities": [5],
              "sample": 48, "batch_size": 16},
}


def _files(work: Path, relative: str) -> list[Path]:
    return sorted((work / relative).glob(f"*/{Path(relative).name}"))


def _digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_adapt_after_a_tiny_finetune(project, tmp_path):
    project(["ingest", "augment", "finetune"], TINY)
    [source] = _files(project.work, "data/06_models/finetuned_model.pt")
    before = _digest(source)

    project(["adapt"], TINY)
    report = pd.read_csv(_files(project.work, "data/08_reporting/adaptation_report.csv")[-1])
    assert list(report.method) == ["none", "bn", "tent"] * 2
    assert list(report.corruption) == ["gaussian_noise"] * 3 + ["contrast"] * 3
    assert (report.severity == 5).all() and (report.images == 48).all()
    assert report.error_after.between(0, 1).all()
    assert (project.work / "data/08_reporting/adaptation_errors.png").stat().st_size > 0

    run = _runs(project.work).iloc[-1]
    assert run["status"] == "FINISHED"
    assert run["params.adapt.variant"] == "finetuned"
    for method in ("none", "bn", "tent"):
        mean = report[report.method == method].error_after.mean()
        assert run[f"metrics.adapt.{method}_error"] == pytest.approx(mean)
    artifacts = {a.path for a in mlflow.MlflowClient().list_artifacts(run["run_id"], "adapt")}
    assert {"adapt/adaptation_report.csv", "adapt/adaptation_errors.png",
            "adapt/adapted_model.pt"} <= artifacts

    # the adapted model is saved as a variant file; the source file is untouched
    [adapted_file] = _files(project.work, "data/06_models/adapted_model.pt")
    assert _files(project.work, "data/06_models/finetuned_model.pt") == [source]
    assert _digest(source) == before
    adapted = TorchModelDataset(filepath=str(adapted_file)).load()
    original = TorchModelDataset(filepath=str(source)).load()
    changed = {k for k, v in adapted.state_dict().items()
               if not torch.equal(v, original.state_dict()[k])}
    norms = {name for name, module in original.named_modules() if isinstance(module, NORMS)}
    assert changed and {k.rsplit(".", 1)[0] for k in changed} <= norms

    # a folder of one's own images, with the digits' class names
    folder = tmp_path / "own"
    rng = np.random.default_rng(0)
    for label in ("3", "7"):
        (folder / label).mkdir(parents=True)
        for i in range(6):
            Image.fromarray(rng.integers(0, 256, (8, 8), dtype=np.uint8)).save(
                folder / label / f"{i}.png")
    project(["adapt"], {**TINY, "adapt": {**TINY["adapt"], "path": str(folder),
                                          "methods": ["bn"], "batch_size": 4}})
    report = pd.read_csv(_files(project.work, "data/08_reporting/adaptation_report.csv")[-1])
    assert list(report.method) == ["bn"] and list(report.corruption) == ["folder"]
    assert report.images.item() == 12

    # shifted images of one class are a test stream too (ingest needs two to train)
    (folder / "3").rename(tmp_path / "elsewhere")
    project(["adapt"], {**TINY, "adapt": {**TINY["adapt"], "path": str(folder),
                                          "methods": ["bn"], "batch_size": 4}})
    report = pd.read_csv(_files(project.work, "data/08_reporting/adaptation_report.csv")[-1])
    assert report.images.item() == 6


def test_adapt_refuses_bad_parameters_and_absent_variants_before_it_starts(project):
    project(["ingest", "augment", "finetune"], TINY)
    runs = len(_runs(project.work))
    with pytest.raises(LifecycleError, match=r"Invalid parameter 'adapt.batch_size' = 0 in "
                       r"the command line \(kedro run --params\)"):
        project(["adapt"], {**TINY, "adapt": {**TINY["adapt"], "batch_size": 0}})
    with pytest.raises(LifecycleError, match=r"unknown corruption 'fog'"):
        project(["adapt"], {**TINY, "adapt": {**TINY["adapt"], "corruptions": ["fog"]}})
    with pytest.raises(LifecycleError, match=r"quantized is an INT8 model"):
        project(["adapt"], {**TINY, "adapt": {**TINY["adapt"], "variant": "quantized"}})
    with pytest.raises(LifecycleError, match=r"Input 'pruned_model' has never been produced: "
                       r"run `kedro run --pipelines=compress` first, or set adapt.variant"):
        project(["adapt"], {**TINY, "adapt": {**TINY["adapt"], "variant": "pruned"}})
    assert len(_runs(project.work)) == runs  # no MLflow run was opened
    assert not (project.work / "data/06_models/adapted_model.pt").exists()


def test_adapt_refuses_a_model_of_other_images_and_an_empty_test_split(project):
    project(["ingest", "augment", "finetune"], TINY)  # digits: 1 channel, 10 classes
    # the images change after the model was trained: 3 channels now
    project(["ingest"], {**TINY, "ingest": {**TINY["ingest"], "channels": 3}})
    with pytest.raises(LifecycleError, match=r"^The latest finetuned_model was made from "
                       r"other images \(shape 1×8×8\) than the latest images \(3×8×8\): run "
                       r"`kedro run --pipelines=finetune` again"):
        project(["adapt"], TINY)
    assert _runs(project.work).iloc[-1]["status"] == "FAILED"
    assert not (project.work / "data/06_models/adapted_model.pt").exists()

    project(["ingest"], {**TINY, "ingest": {**TINY["ingest"],
                                            "splits": {"test": 0, "val": 0.1}}})
    with pytest.raises(LifecycleError, match=r"^The test split is empty \(ingest.splits.test "
                       r"is 0\), so there is nothing to corrupt"):
        project(["adapt"], TINY)
    assert not (project.work / "data/06_models/adapted_model.pt").exists()
