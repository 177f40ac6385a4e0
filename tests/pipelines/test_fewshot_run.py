"""Class hold-out through the whole lifecycle and the ``fewshot`` pipeline, through Kedro
and kedro-mlflow on tiny digits: no novel-class image reaches a training stage, the
downstream stages keep working, and the few-shot report reaches the catalog and MLflow."""

from __future__ import annotations

import hashlib
import logging
from pathlib import Path

import mlflow
import numpy as np
import pandas as pd
import pytest

from model_lifecycle.errors import LifecycleError
from model_lifecycle.io import ImageSetDataset, TorchModelDataset
from model_lifecycle.pipelines.finetune import nodes as finetune_nodes
from model_lifecycle.pipelines.pretrain import nodes as pretrain_nodes
from tests.pipelines.test_ingest_augment_run import _runs, _versions
from tests.pipelines.test_pretrain_finetune_run import TINY

NOVEL = ["7", "8", "9"]
FEWSHOT = {"novel_classes": NOVEL, "way": 3, "shots": [1, 5], "queries": 5, "episodes": 40,
           "arch_kwargs": {"width": 4}, "feature_norm": "l2",
           "meta_train": {"episodes": 30, "way": 3, "shot": 2, "queries": 3, "lr": 0.003}}


def _hashes(images: np.ndarray) -> set[str]:
    return {hashlib.sha1(image.tobytes()).hexdigest() for image in images}


def _spy(monkeypatch: pytest.MonkeyPatch, module, name: str, seen: list) -> None:
    """Record the images and index sets a training function is handed, then train."""
    real = getattr(module, name)

    def spy(model, images, labels, splits, *args, **kwargs):
        seen.append((images, labels, {k: v.copy() for k, v in splits.items()}))
        return real(model, images, labels, splits, *args, **kwargs)

    monkeypatch.setattr(module, name, spy)


def test_held_out_classes_never_reach_training_and_every_stage_still_runs(
        project, monkeypatch, caplog):
    seen: dict[str, list] = {"pretrain": [], "finetune": []}
    _spy(monkeypatch, pretrain_nodes, "pretrain", seen["pretrain"])
    _spy(monkeypatch, finetune_nodes, "finetune", seen["finetune"])
    with caplog.at_level(logging.INFO):
        project(["__default__", "fewshot"], {**TINY, "fewshot": FEWSHOT})
    work = project.work

    [novel_file] = _versions(work, "data/03_primary/novel_images.npz")
    [images_file] = _versions(work, "data/03_primary/images.npz")
    novel = ImageSetDataset(filepath=str(novel_file)).load()
    images = ImageSetDataset(filepath=str(images_file)).load()
    assert novel.class_names == tuple(NOVEL) and len(novel) > 500  # ~180 digits a class
    assert images.class_names == tuple(str(d) for d in range(7))
    assert len(images) + len(novel) == 1797
    novel_hashes = _hashes(novel.images)
    assert novel_hashes.isdisjoint(_hashes(images.images))

    # what the training stages were handed: base images, base labels, nothing else
    for stage in ("pretrain", "finetune"):
        [(handed, labels, splits)] = seen[stage]
        assert labels.max() == 6, stage
        for name, indices in splits.items():
            assert novel_hashes.isdisjoint(_hashes(handed[indices])), (stage, name)

    # the downstream stages work on the 7 base classes
    report = pd.read_csv(_versions(work, "data/08_reporting/evaluation_report.csv")[-1])
    assert {"finetuned", "pruned", "quantized", "distilled"} <= set(report["variant"])
    finetuned = TorchModelDataset(filepath=str(
        _versions(work, "data/06_models/finetuned_model.pt")[-1])).load()
    assert finetuned.num_classes == 7

    # the few-shot report: every encoder, every shot, sane numbers
    [report_file] = _versions(work, "data/08_reporting/fewshot_report.csv")
    fewshot = pd.read_csv(report_file)
    assert list(fewshot.columns) == ["encoder", "way", "shot", "accuracy", "ci95",
                                     "episodes"]
    assert set(zip(fewshot["encoder"], fewshot["shot"], strict=True)) == {
        (e, s) for e in ("pretrained", "supervised", "scratch", "meta_trained")
        for s in (1, 5)}
    assert (fewshot["way"] == 3).all() and (fewshot["episodes"] == 40).all()
    assert fewshot["accuracy"].between(0, 1).all() and (fewshot["ci95"] > 0).all()
    # the trained encoders beat chance on classes they never saw
    trained = fewshot[fewshot["encoder"] != "scratch"]
    assert (trained[trained["shot"] == 5]["accuracy"] > 1 / 3 + 0.1).all()
    assert len(_versions(work, "data/06_models/fewshot_encoder.pt")) == 1

    run = _runs(work).iloc[-1]
    assert run["status"] == "FINISHED"
    assert all(name in run["params.fewshot.novel_classes"] for name in NOVEL)
    row = fewshot.set_index(["encoder", "shot"]).loc[("meta_trained", 5)]
    assert run["metrics.fewshot.meta_trained.3way_5shot.accuracy"] == \
        pytest.approx(row["accuracy"])
    assert run["metrics.fewshot.meta_trained.3way_5shot.ci95"] == pytest.approx(row["ci95"])
    assert run["metrics.fewshot.meta_train.episodes"] == 30
    artifacts = {a.path for a in mlflow.MlflowClient().list_artifacts(run["run_id"],
                                                                      "fewshot")}
    assert {"fewshot/fewshot_report.csv", "fewshot/fewshot_accuracy.png"} <= artifacts
    assert "Held out" in caplog.text


def test_missing_encoders_are_skipped_with_a_reason(project, caplog):
    params = {**TINY, "fewshot": {**FEWSHOT, "episodes": 10, "shots": [1],
                                  "meta_train": {**FEWSHOT["meta_train"], "episodes": 5}}}
    project(["ingest", "augment"], params)
    with caplog.at_level(logging.WARNING):
        project(["fewshot"], params)
    [report_file] = _versions(project.work, "data/08_reporting/fewshot_report.csv")
    assert pd.read_csv(report_file)["encoder"].tolist() == ["scratch", "meta_trained"]
    assert "encoder 'pretrained' skipped: no pretrained_encoder exists: run `kedro run " \
           "--pipelines=pretrain` first" in caplog.text
    assert "encoder 'supervised' skipped: no finetuned_model exists" in caplog.text
    # starting meta-training from an encoder that does not exist is refused up front
    start = {**params, "fewshot": {**params["fewshot"], "meta_train": {
        **params["fewshot"]["meta_train"], "init": "pretrained"}}}
    with pytest.raises(LifecycleError, match=r"Input 'pretrained_encoder' has never been "
                       r"produced: run `kedro run --pipelines=pretrain` first, or set "
                       r"fewshot.meta_train.init: scratch\."):
        project(["fewshot"], start)


@pytest.mark.parametrize(("fewshot", "message"), [
    ({"novel_classes": ["7", "eleven"], "way": 2},
     r"^fewshot.novel_classes names 'eleven', which the data does not hold: the classes "
     r"are 0, 1, 2, 3, 4, 5, 6, 7, 8, 9\.$"),
    ({"novel_classes": [str(d) for d in range(1, 10)], "way": 2},
     r"^fewshot.novel_classes holds out 9 of the 10 classes, leaving 1 to train on: hold "
     r"out at most 8\.$"),
    ({"novel_classes": ["8", "9"], "way": 3},
     r"^Invalid parameter 'fewshot.way' = 3 in the command line \(kedro run --params\): an "
     r"episode needs 3 classes but fewshot.novel_classes holds out 2: lower fewshot.way or "
     r"hold out more classes\.$"),
    # every shot too many: the sentence quotes the most demanding one
    ({"novel_classes": ["8", "9"], "way": 2, "shots": [1, 100], "queries": 180},
     r"^Class '8' has 174 novel images but fewshot.shots = 100 with fewshot.queries = 180 "
     r"needs 280 per class: lower them \(together at most 174\) or add images of '8'\.$"),
])
def test_bad_hold_out_is_refused_before_anything_is_saved(project, fewshot, message):
    with pytest.raises(LifecycleError, match=message):
        project(["ingest"], {"ingest": {"image_size": 8}, "fewshot": fewshot})
    assert not Path(project.work / "data/03_primary/images.npz").exists()


def test_fewshot_without_a_hold_out_says_how_to_set_one(project):
    project(["ingest", "augment"], {"ingest": {"image_size": 8}})
    with pytest.raises(LifecycleError, match=r"^fewshot.novel_classes is empty: list the "
                       r"classes to hold out"):
        project(["fewshot"], {"ingest": {"image_size": 8}})


def test_meta_training_runs_only_when_its_encoder_is_compared(project, monkeypatch, caplog):
    """Without `meta_trained` in fewshot.encoders nothing is meta-trained: no call, no
    fewshot_encoder version, no meta-training metric, and meta_train.init: pretrained
    needs no pretrained encoder."""
    from model_lifecycle.pipelines.fewshot import nodes as fewshot_nodes  # noqa: PLC0415

    def refuse(*args, **kwargs):
        raise AssertionError("meta-training ran although meta_trained is not compared")

    monkeypatch.setattr(fewshot_nodes, "meta_train", refuse)
    params = {**TINY, "fewshot": {
        **FEWSHOT, "episodes": 10, "shots": [1], "encoders": ["scratch"],
        "meta_train": {**FEWSHOT["meta_train"], "init": "pretrained"}}}
    project(["ingest", "augment"], params)
    with caplog.at_level(logging.INFO):
        project(["fewshot"], params)
    [report_file] = _versions(project.work, "data/08_reporting/fewshot_report.csv")
    assert pd.read_csv(report_file)["encoder"].tolist() == ["scratch"]
    assert not _versions(project.work, "data/06_models/fewshot_encoder.pt")
    assert "meta-training skipped: fewshot.encoders (scratch) does not list meta_trained" \
        in caplog.text
    assert "Replacing dataset" not in caplog.text  # Kedro's warning: the preflight means to
    run = _runs(project.work).iloc[-1]
    assert run["status"] == "FINISHED"
    assert not [c for c in run.index if c.startswith("metrics.fewshot.meta_train")
                and pd.notna(run[c])]
    assert run["metrics.fewshot.scratch.3way_1shot.accuracy"] > 0


def test_an_encoder_trained_on_other_images_is_skipped(caplog):
    """Re-ingested with another hold-out of as many classes, the latest fine-tuned model
    has the right number of outputs, but one of today's novel classes was among its
    training labels: it must not be scored on them."""
    from model_lifecycle.data.imageset import ImageSet  # noqa: PLC0415
    from model_lifecycle.models import build_model  # noqa: PLC0415
    from model_lifecycle.pipelines.fewshot.nodes import unusable  # noqa: PLC0415

    rng = np.random.default_rng(0)
    before = ImageSet(rng.integers(0, 255, (6, 1, 8, 8), dtype=np.uint8),
                      np.array([0, 0, 1, 1, 2, 2]), ("0", "1", "7"), "digits")
    now = ImageSet(before.images, before.labels, ("0", "1", "8"), "digits")  # 7 held out
    model = build_model("small_cnn", 3, 1, input_size=(8, 8), width=4)
    model.trained_on = {"images": before.fingerprint()}
    assert unusable(model, "supervised", before) is None
    assert unusable(model, "supervised", now) == (
        "the latest finetuned_model was trained on other images than the latest base images "
        "(ingested since, perhaps with another hold-out), so it may have seen the novel "
        "classes: run `kedro run --pipelines=finetune` again")
