"""``transfer``: pretrain on one data set, fine-tune on another of other channels and
size, by parameters alone; both keep their versioned images and splits."""

from __future__ import annotations

import pytest
import torch
from kedro.framework.session import KedroSession

from model_lifecycle.errors import LifecycleError
from tests.pipelines.test_ingest_augment_run import _runs
from tests.pipelines.test_pretrain_finetune_run import TINY


def _transfer_params(cifar_dir, **source_pretrain) -> dict:
    return {
        **TINY,
        # the target: the digits, 1 channel, 8 px; an encoder frozen by the linear probe
        "finetune": {**TINY["finetune"], "strategy": "linear_probe"},
        # the source: CIFAR-format RGB images at 12 px
        "source": {"ingest": {"source": "cifar10", "path": str(cifar_dir), "image_size": 12,
                              "labeled_fraction": 0.5,
                              "splits": {"val": 0.25}},
                   "pretrain": {**TINY["pretrain"], "budget_seconds": None,
                                "checkpoint": None, **source_pretrain}},
    }


def _run(work, params, **kwargs):
    with KedroSession.create(project_path=work, runtime_params=params) as session:
        session.run(pipeline_names=["transfer"], **kwargs)
        return session.load_context().catalog


def test_an_encoder_pretrained_on_rgb_cifar_is_fine_tuned_on_grayscale_digits(
        project, cifar_dir):
    # two digits held out for few-shot episodes: the target's classes, not the source's
    checkpoint = str(project.work / "source-pretrain.pt")
    params = {**_transfer_params(cifar_dir, checkpoint=checkpoint),
              "fewshot": {"novel_classes": ["8", "9"], "way": 2}}
    catalog = _run(project.work, params, to_nodes=["finetune_model"])

    source, target = catalog.load("source.images"), catalog.load("images")
    assert (source.source, source.image_shape) == ("cifar10", (3, 12, 12))
    assert (target.source, target.image_shape) == ("digits", (1, 8, 8))
    assert catalog.load("novel_images").class_names == ("8", "9")
    assert len(source.class_names) == 10  # the source keeps every class of its own
    assert set(catalog.load("source.splits")) >= {"train_labeled", "val", "test"}

    encoder, model = catalog.load("source.pretrained_encoder"), catalog.load("finetuned_model")
    assert encoder.spec["in_channels"] == 3 and model.spec["in_channels"] == 1
    # the fine-tuned model is the source's encoder, its RGB kernels summed for gray input
    # (the linear probe froze the encoder, so the conversion is all that changed)
    first = "encoder.stages.0.0.0.weight"
    torch.testing.assert_close(model.state_dict()[first],
                               encoder.state_dict()[first].sum(1, keepdim=True))

    run = _runs(project.work).iloc[-1]
    assert run["status"] == "FINISHED"
    assert run["params.source.ingest.source"] == "cifar10"
    assert run["params.ingest.source"] == "digits"
    assert "metrics.source.pretrain.knn_accuracy" in run and "metrics.finetune.val_accuracy" in run

    # resuming the source's pretraining with other settings names the key as it is given
    params["source"]["pretrain"].update(resume=True, epochs=3)
    with pytest.raises(LifecycleError, match=r"source.pretrain.epochs 2 → 3"):
        _run(project.work, params, node_names=["source.pretrain_encoder"])


def test_an_unknown_group_under_source_is_named(project, cifar_dir):
    params = _transfer_params(cifar_dir)
    params["source"]["finetune"] = {"epochs": 1}
    with pytest.raises(LifecycleError, match=r"Unknown parameter group 'source.finetune' given "
                       r"with kedro run --params: the groups under 'source' are ingest, "
                       r"augment, pretrain"):
        project(["transfer"], params)


def test_a_bad_source_value_names_its_file_and_key(project, cifar_dir):
    params = _transfer_params(cifar_dir, epochs=-1)
    with pytest.raises(LifecycleError, match=r"Invalid parameter 'source.pretrain.epochs' = -1 "
                       r"in the command line"):
        project(["transfer"], params)


def test_fine_tuning_alone_on_a_fresh_project_names_the_transfer_pipeline(project, cifar_dir):
    with pytest.raises(LifecycleError, match=r"Inputs 'augmentation_policy', 'images', "
                       r"'source.pretrained_encoder', 'splits' have never been produced: run "
                       r"`kedro run --pipelines=ingest,augment,transfer` first"):
        _run(project.work, _transfer_params(cifar_dir), node_names=["finetune_model"])


def test_a_vit_source_of_another_image_size_is_refused_before_pretraining(project, cifar_dir):
    params = _transfer_params(cifar_dir, arch="vit", arch_kwargs={})  # source 12 px, target 8
    with pytest.raises(LifecycleError, match=r"^source.pretrain.arch 'vit' is built for one "
                       r"image size, and the source images \(12×12, source.ingest.image_size\) "
                       r"differ from the target's \(8×8, ingest.image_size\): make them "
                       r"equal\.$"):
        _run(project.work, params)
    assert not (project.work / "data" / "03_primary").exists() or \
        not any((project.work / "data" / "03_primary").rglob("*.npz"))


def test_source_images_its_architecture_cannot_take_are_refused_before_the_run(
        project, cifar_dir):
    params = _transfer_params(cifar_dir, arch="vit", arch_kwargs={"patch_size": 5})
    with pytest.raises(LifecycleError, match=r"^source.pretrain.arch 'vit' cannot take images "
                       r"of source.ingest.image_size 12×12: images of 12×12 pixels do not "
                       r"divide into 5-pixel patches"):
        _run(project.work, params)
    assert not (project.work / "data" / "03_primary").exists() or \
        not any((project.work / "data" / "03_primary").rglob("*.npz"))


def test_a_source_of_the_same_classes_holds_out_those_it_holds():
    """A source that holds some of the novel classes (the same data set, or one sharing
    class names) never pretrains on them; the target's other classes are not its own."""
    from model_lifecycle.pipelines.ingest.nodes import ingest_source_images  # noqa: PLC0415

    images, _, novel = ingest_source_images({"source": "digits", "image_size": 8},
                                            {"novel_classes": ["9", "cat"], "way": 2})
    assert novel.class_names == ("9",) and len(novel) == 180
    assert images.class_names == tuple("012345678")
