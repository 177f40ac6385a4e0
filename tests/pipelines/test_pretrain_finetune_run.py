"""``pretrain`` and ``finetune`` through Kedro and kedro-mlflow, on tiny digits and tiny models
(the whole default lifecycle is run in ``test_lifecycle_run``)."""

from __future__ import annotations

import pytest

from model_lifecycle.errors import LifecycleError
from model_lifecycle.io import TorchModelDataset
from tests.conftest import THREADS
from tests.pipelines.test_ingest_augment_run import _runs, _versions

TINY = {
    "ingest": {"image_size": 8, "labeled_fraction": 0.3},
    "pretrain": {"arch_kwargs": {"width": 4}, "epochs": 2, "batch_size": 128, "eval_every": 1,
                 "hidden_dim": 32, "projection_dim": 16},
    "finetune": {"epochs": 3, "batch_size": 64},
    "runtime": {"num_threads": THREADS},
    "compress": {"prune": {"recovery": {"epochs_per_step": 1, "final_epochs": 1},
                           "structured": {"steps": 2}},
                 "distill": {"epochs": 2, "student_kwargs": {"width": 1}},
                 "quantize": {"calibration_batches": 2}},
    "evaluate": {"latency": {"repeats": 3, "warmup": 1},
                 "robustness": {"images": 100, "severities": [1, 3, 5]},
                 "adversarial": {"images": 100, "steps": 5}},
    "explain": {"images_per_class": 1, "ig_steps": 8, "curve_steps": 8},
}


def test_finetune_without_a_pretrained_encoder_names_what_to_do(project):
    project(["ingest", "augment"], TINY)
    with pytest.raises(LifecycleError, match=r"Input 'pretrained_encoder' has never been "
                       r"produced: run `kedro run --pipelines=pretrain` first, or set "
                       r"finetune.init: scratch"):
        project(["finetune"], TINY)
    scratch = {**TINY, "finetune": {**TINY["finetune"], "init": "scratch",
                                    "strategy": "linear_probe"}}
    project(["finetune"], scratch)
    run = _runs(project.work).iloc[-1]
    assert run["status"] == "FINISHED"
    assert run["metrics.finetune.trainable_params"] < run["metrics.finetune.total_params"]


def test_a_model_made_from_other_images_is_refused_with_one_sentence(project):
    """Re-ingesting at another size, then running a later stage: the fine-tuned model
    was made from the older images, which the sentence says, before the node runs."""
    scratch = {**TINY, "finetune": {**TINY["finetune"], "init": "scratch", "epochs": 1}}
    project(["ingest", "augment", "finetune"], scratch)
    [saved] = _versions(project.work, "data/06_models/finetuned_model.pt")
    model = TorchModelDataset(filepath=str(saved)).load()
    assert model.trained_on["image_shape"] == [1, 8, 8]  # saved with the model
    resized = {**scratch, "ingest": {**scratch["ingest"], "image_size": 12}}
    project(["ingest"], resized)
    with pytest.raises(LifecycleError, match=r"^The latest finetuned_model was made from other "
                       r"images \(shape 1×8×8\) than the latest images \(1×12×12\): run `kedro "
                       r"run --pipelines=finetune` again and the stages after it, or load the "
                       r"images it was made from with --load-versions images:<version>\.$"):
        project(["compress"], resized)
    assert len(_versions(project.work, "data/06_models/pruned_model.pt")) == 0


def test_images_too_small_for_the_architecture_are_refused_before_ingest_saves(project):
    tiny = {**TINY, "ingest": {**TINY["ingest"], "image_size": 3},
            "finetune": {**TINY["finetune"], "init": "scratch"}}
    with pytest.raises(LifecycleError, match=r"^ingest.image_size 3×3 is too small for "
                       r"finetune.arch 'small_cnn' \(.*\): raise ingest.image_size\.$"):
        project(["ingest", "augment", "finetune"], tiny)
    assert not _versions(project.work, "data/03_primary/images.npz")


@pytest.mark.parametrize(("group", "change", "said"), [
    ("compress", {"distill": {"student_kwargs": {"widht": 12}}},
     r"^compress.distill.student_kwargs \{.*'widht': 12\} do not suit "
     r"compress.distill.student_arch 'small_cnn' \(.*widht.*\): fix them\.$"),
    ("compress", {"distill": {"student_kwargs": {"width": 0}}},
     r"^ingest.image_size 8×8 is too small for compress.distill.student_arch 'small_cnn' "
     r"\(.*\): raise ingest.image_size or fix compress.distill.student_kwargs "
     r"\{'width': 0\}\.$"),
    ("pretrain", {"arch_kwargs": {"width": 0}},
     r"^ingest.image_size 8×8 is too small for pretrain.arch 'small_cnn' \(.*\): raise "
     r"ingest.image_size or fix pretrain.arch_kwargs \{'width': 0\}\.$"),
    ("pretrain", {"arch_kwargs": {"widht": 4}},
     r"^pretrain.arch_kwargs \{'widht': 4\} do not suit pretrain.arch 'small_cnn'"),
])
def test_architecture_arguments_are_checked_before_ingest_saves(project, group, change,
                                                                said):
    """A misspelt or impossible argument of an architecture the run builds late (the
    distillation student, after pretraining and fine-tuning) names its key at once."""
    tiny = {**TINY, group: {**TINY.get(group, {}), **change}}
    with pytest.raises(LifecycleError, match=said):
        project(None, tiny)
    assert not _versions(project.work, "data/03_primary/images.npz")


def test_a_run_that_does_not_ingest_is_not_checked_against_conf_image_size(project):
    """register reads `params:ingest` too, but the latest images may have been ingested
    at another size (--params): the window is checked by explain against those."""
    window = {**TINY, "explain": {**TINY["explain"], "occlusion_window": 10}}
    with pytest.raises(LifecycleError, match="never been produced"):
        project(["explain", "register"], window)


def test_qat_settings_under_another_mode_are_said_to_be_unused(project, caplog):
    tiny = {**TINY, "compress": {**TINY["compress"],
                                 "quantize": {"mode": "static", "qat_epochs": 7}}}
    with pytest.raises(LifecycleError, match="never been produced"):
        project(["compress"], tiny)  # a fresh project: refused after the checks
    assert ("compress.quantize.mode is static, so compress.quantize.qat_epochs 7 is not "
            "used (they apply to mode: qat only)") in caplog.text


def test_an_occlusion_window_covering_the_images_is_refused_before_ingest_saves(project):
    """explain.occlusion_window as large as ingest.image_size: constant maps, found before
    the run (not at explain, after the training)."""
    covering = {**TINY, "explain": {**TINY["explain"], "occlusion_window": 64}}
    with pytest.raises(LifecycleError, match=r"^explain.occlusion_window 64 covers the "
                       r"whole 8×8 images \(ingest.image_size\)"):
        project(None, covering)
    assert not _versions(project.work, "data/03_primary/images.npz")


def test_a_variant_the_run_leaves_out_is_not_checked_against_the_images():
    """An older scratch_model (evaluate.include_scratch: false) must not stop evaluate."""
    from types import SimpleNamespace  # noqa: PLC0415

    from model_lifecycle.hooks import PreflightHook, TrainedOnHook  # noqa: PLC0415

    images = SimpleNamespace(fingerprint=lambda: "new", image_shape=(1, 12, 12))
    old = SimpleNamespace(trained_on={"images": "old", "image_shape": [1, 8, 8]})
    preflight = PreflightHook()
    preflight.unneeded = {"scratch_model"}
    hook = TrainedOnHook(preflight)
    hook.before_node_run(None, {"images": images, "scratch_model": old})
    with pytest.raises(LifecycleError, match=r"^The latest finetuned_model was made from"):
        hook.before_node_run(None, {"images": images, "scratch_model": old,
                                    "finetuned_model": old})


def test_a_model_of_other_images_of_the_same_shape_is_said_so():
    """Re-ingesting a folder with more images keeps the shape: the sentence must not
    read as if the shapes differed (`shape 3×32×32 than … (3×32×32)`)."""
    from types import SimpleNamespace  # noqa: PLC0415

    from model_lifecycle.hooks import PreflightHook, TrainedOnHook  # noqa: PLC0415

    images = SimpleNamespace(fingerprint=lambda: "new", image_shape=(3, 32, 32))
    old = SimpleNamespace(trained_on={"images": "old", "image_shape": [3, 32, 32]})
    preflight = PreflightHook()
    preflight.unneeded = set()
    with pytest.raises(LifecycleError, match=r"^The latest pruned_model was made from other "
                       r"images than the latest images \(the same shape, 3×32×32, other "
                       r"pixels or labels\): run `kedro run --pipelines=compress` again"):
        TrainedOnHook(preflight).before_node_run(None, {"images": images,
                                                        "pruned_model": old})


def test_a_report_of_other_models_is_not_registered():
    """`--pipelines=finetune` then `--pipelines=register`: the new fine-tuned model would
    be registered with the figures the report measured on the one before."""
    from types import SimpleNamespace  # noqa: PLC0415

    import pandas as pd  # noqa: PLC0415

    from model_lifecycle.hooks import PreflightHook, TrainedOnHook  # noqa: PLC0415

    report = pd.DataFrame({"variant": ["finetuned", "onnx_int8"],
                           "model_id": ["m-measured", None]})
    hook = TrainedOnHook(PreflightHook())
    measured = SimpleNamespace(trained_on={"model_id": "m-measured"})
    hook.before_node_run(None, {"evaluation_report": report, "finetuned_model": measured,
                                "onnx_int8_model": object()})
    retrained = SimpleNamespace(trained_on={"model_id": "m-retrained"})
    with pytest.raises(LifecycleError, match=r"^The evaluation report measured another "
                       r"finetuned_model than the one loaded \(made since by `kedro run "
                       r"--pipelines=finetune`, or another version pinned with "
                       r"--load-versions\): run `kedro run --pipelines=explain,evaluate`"):
        hook.before_node_run(None, {"evaluation_report": report,
                                    "finetuned_model": retrained})


def test_an_encoder_pretrained_on_other_images_is_warned_of(caplog):
    from types import SimpleNamespace  # noqa: PLC0415

    from model_lifecycle.hooks import PreflightHook, TrainedOnHook  # noqa: PLC0415

    images = SimpleNamespace(fingerprint=lambda: "new", image_shape=(1, 8, 8))
    preflight = PreflightHook()
    preflight.unneeded = set()
    hook = TrainedOnHook(preflight)
    node = SimpleNamespace(name="finetune_model")
    with caplog.at_level("WARNING"):
        hook.before_node_run(node, {"images": images, "pretrained_encoder": SimpleNamespace(
            trained_on={"images": "new"})})
        assert not caplog.text
        hook.before_node_run(node, {"images": images, "pretrained_encoder": SimpleNamespace(
            trained_on={"images": "old"})})
    assert "finetune_model reads a pretrained_encoder pretrained on other images" in caplog.text


def test_a_misspelt_architecture_stops_the_run_before_anything_runs(project):
    """The student's architecture is read by compress, after pretraining and fine-tuning:
    a typo must not cost them."""
    typo = {**TINY, "compress": {**TINY["compress"],
                                 "distill": {**TINY["compress"]["distill"],
                                             "student_arch": "small_cnnn"}}}
    with pytest.raises(LifecycleError, match=r"^compress\.distill\.student_arch 'small_cnnn' "
                       r"is not an architecture: choose one of .*small_cnn"):
        project(None, typo)
    assert not _versions(project.work, "data/03_primary/images.npz")


def test_images_an_architecture_cannot_take_are_refused_before_ingest_saves_them(project):
    """vit cuts images into patches: 18 pixels do not divide into 4-pixel patches. Said
    before the run, not by pretraining after ingest has saved the 18-pixel images."""
    params = {"ingest": {"image_size": 18},
              "pretrain": {"arch": "vit", "arch_kwargs": {"patch_size": 4, "depth": 1,
                                                          "width": 16, "heads": 2}}}
    with pytest.raises(LifecycleError, match=r"^pretrain.arch 'vit' cannot take images of "
                       r"ingest.image_size 18×18: images of 18×18 pixels do not divide into "
                       r"4-pixel patches: set arch_kwargs.patch_size"):
        project(["ingest", "augment", "pretrain"], params)
    assert not (project.work / "data" / "03_primary").exists()
