"""The nodes called directly, as plain functions, on tiny in-memory data: what each
returns, and that none of them changes the models it is given."""

from __future__ import annotations

import copy

import numpy as np
import pytest
import torch

from model_lifecycle.augment.config import AugmentParams, resolve_policy
from model_lifecycle.data.config import SplitFractions
from model_lifecycle.data.imageset import ImageSet
from model_lifecycle.data.splits import make_splits
from model_lifecycle.errors import LifecycleError
from model_lifecycle.params import parse_params
from model_lifecycle.pipelines.compress.nodes import (
    describe_finetuned,
    distill_model,
    prune_model,
    quantize_model,
    quantize_onnx_model,
)
from model_lifecycle.pipelines.evaluate.nodes import (
    assemble_report,
    evaluate_variants,
    measure_adversarial_robustness,
    measure_corruption_robustness,
    measure_onnx,
)
from model_lifecycle.pipelines.explain.nodes import explain_variants
from model_lifecycle.pipelines.finetune.nodes import finetune_model
from model_lifecycle.pipelines.ingest.nodes import ingest_images
from model_lifecycle.pipelines.robust.nodes import train_robust_model
from model_lifecycle.training.config import FinetuneParams

RUNTIME = {"num_threads": 1}
EVALUATE = {"latency": {"repeats": 3, "warmup": 0, "batch_sizes": [1, 4]},
            "robustness": {"corruptions": ["gaussian_noise", "contrast"], "severities": [1, 5],
                           "images": 16},
            "adversarial": {"images": 16, "steps": 3}}
EXPLAIN = {"methods": ["integrated_gradients", "occlusion"], "images_per_class": 2,
           "ig_steps": 4, "curve_steps": 4}
COMPRESS = {"prune": {"structured": {"steps": 1, "round_to": None},
                      "recovery": {"epochs_per_step": 1, "final_epochs": 1, "batch_size": 16}},
            "quantize": {"calibration_batches": 1, "calibration_batch_size": 8},
            "distill": {"epochs": 1, "batch_size": 16, "student_kwargs": {"width": 2}}}


@pytest.fixture(scope="module")
def data():
    rng = np.random.default_rng(0)
    labels = np.repeat(np.arange(3), 40)
    images = rng.integers(0, 60, (120, 1, 8, 8), dtype=np.uint8)
    images[np.arange(120), 0, labels * 2, :] = 255  # a stripe per class
    imageset = ImageSet(images, labels, ("a", "b", "c"), "test")
    splits = make_splits(imageset, SplitFractions(val=0.2, test=0.2), labeled_fraction=0.5,
                         seed=0)
    return imageset, splits, resolve_policy(AugmentParams())


@pytest.fixture(scope="module")
def finetuned(data):
    images, splits, policy = data
    model, metrics = finetune_model(images, splits, policy, None,
                                    {"init": "scratch", "arch_kwargs": {"width": 4},
                                     "epochs": 3, "batch_size": 16, "checkpoint": None},
                                    RUNTIME)
    return model, metrics


def _state(model):
    return {k: v.clone() for k, v in model.state_dict().items()}


def test_ingest_says_at_once_when_meta_training_will_lack_labelled_images(caplog):
    """5% of the digits' labels leave 6 of a class; an episode of 5 shots and 15 queries
    needs 20: said at ingest, with the fix, not after pretraining and fine-tuning."""
    ingest_images({"source": "digits", "image_size": 8, "labeled_fraction": 0.05},
                  {"novel_classes": ["8", "9"], "way": 2})
    assert ("Meta-training (fewshot.encoders lists meta_trained) will be refused on these "
            "images: Class '0' has 6 train_labeled images but fewshot.meta_train.shot = 5 "
            "with fewshot.meta_train.queries = 15 needs 20 per class: lower them (together "
            "at most 6) or label more of the training images (a higher "
            "ingest.labeled_fraction, then ingest again).") in caplog.text
    caplog.clear()
    ingest_images({"source": "digits", "image_size": 8, "labeled_fraction": 0.05},
                  {"novel_classes": ["8", "9"], "way": 2, "encoders": ["pretrained"]})
    assert "Meta-training" not in caplog.text


def test_a_student_larger_than_its_teacher_is_trained_with_a_warning(data, finetuned,
                                                                     caplog):
    images, splits, policy = data
    larger = {**COMPRESS, "distill": {**COMPRESS["distill"], "student_kwargs": {"width": 8}}}
    student, _ = distill_model(finetuned[0], images, splits, policy, larger, RUNTIME,
                               EVALUATE)
    assert sum(p.numel() for p in student.parameters()) > \
        sum(p.numel() for p in finetuned[0].parameters())
    assert "the student (small_cnn, " in caplog.text
    assert "is no smaller than its teacher" in caplog.text


def test_ingest_returns_images_and_their_splits_together():
    images, splits, novel = ingest_images({"source": "digits", "image_size": 8})
    assert images.images.shape == (1797, 1, 8, 8)
    assert len(novel) == 0 and novel.class_names == ()  # no class held out by default
    assert str(splits["images_fingerprint"]) == images.fingerprint()
    assert sum(len(splits[k]) for k in ("train_labeled", "train_unlabeled", "val",
                                        "test")) == 1797


def test_finetune_returns_the_model_and_its_metric_history(finetuned):
    model, metrics = finetuned
    assert model.training is False
    assert [p["step"] for p in metrics["val_accuracy"]] == [0, 1, 2, 3]  # + the final one
    for key in ("test_accuracy", "epochs", "train_seconds", "trainable_params"):
        assert len(metrics[key]) == 1, key
    assert metrics["epochs"][0]["value"] == 3


def test_compress_nodes_leave_the_fine_tuned_model_as_it_was(data, finetuned):
    images, splits, policy = data
    model, _ = finetuned
    before = _state(model)
    pruned, pruned_metrics = prune_model(model, images, splits, policy, COMPRESS, RUNTIME,
                                         EVALUATE)
    quantized, quantized_metrics = quantize_model(model, pruned, images, splits, policy,
                                                  COMPRESS, RUNTIME, EVALUATE)
    student, student_metrics = distill_model(model, images, splits, policy, COMPRESS, RUNTIME,
                                             EVALUATE)
    onnx_int8, onnx_metrics = quantize_onnx_model(model, pruned, images, splits, COMPRESS,
                                                  RUNTIME, EVALUATE)
    cost = describe_finetuned(model, images, splits, EVALUATE)
    after = model.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before)
    assert pruned_metrics["macs_reduction"][0]["value"] >= 2.0
    assert quantized_metrics["size_bytes"][0]["value"] < cost["size_bytes"][0]["value"]
    assert student_metrics["params"][0]["value"] < cost["params"][0]["value"]
    assert student_metrics["epochs"][0]["value"] == 1
    assert "folded_latency_b4_ms" in cost and "latency_b4_ms" in pruned_metrics
    x = torch.from_numpy(images.images[:2]).float() / 255
    for variant in (pruned, quantized, student, onnx_int8):
        assert variant(x).shape == (2, 3)
    # the ONNX Runtime INT8 file: smaller than the float weights (a tiny model: the graph
    # is most of the file), checked against them
    assert onnx_metrics["size_bytes"][0]["value"] < cost["size_bytes"][0]["value"]
    assert onnx_metrics["top1_agreement"][0]["value"] >= 0.8
    assert onnx_int8.quantization["backend"] == "onnxruntime"


def test_evaluate_rows_follow_the_declaration(data, finetuned):
    images, splits, _ = data
    model, _ = finetuned
    other = copy.deepcopy(model)
    report, details = evaluate_variants(
        images, splits, COMPRESS, EVALUATE, finetuned=model, pruned=other, quantized=None,
        distilled=other, scratch=other)
    # quantized is absent (None); scratch is optional and evaluate.include_scratch is off
    assert list(report["variant"]) == ["finetuned", "pruned", "distilled"]
    assert report.set_index("variant").loc["pruned", "method"].startswith("structured pruning")
    assert set(details["variants"]) == {"finetuned", "pruned", "distilled"}
    with_scratch, _ = evaluate_variants(
        images, splits, COMPRESS, {**EVALUATE, "include_scratch": True}, finetuned=model,
        scratch=other)
    assert list(with_scratch["variant"]) == ["finetuned", "scratch"]


def test_evaluate_names_a_model_no_better_than_guessing(data, caplog):
    images, splits, policy = data
    model, _ = finetune_model(images, splits, policy, None,
                              {"init": "scratch", "arch_kwargs": {"width": 4}, "epochs": 15,
                               "batch_size": 8, "checkpoint": None}, RUNTIME)
    guesser = copy.deepcopy(model)
    for parameter in guesser.head.parameters():  # every image: the same logits
        torch.nn.init.zeros_(parameter)
    report, _ = evaluate_variants(images, splits, COMPRESS, EVALUATE, finetuned=model,
                                  distilled=guesser)
    accuracy = report.set_index("variant")["accuracy"]
    assert accuracy["finetuned"] > 0.6  # the fine-tuned model learnt: not named
    warned = [r.getMessage() for r in caplog.records if r.levelname == "WARNING"]
    test = len(splits["test"])
    assert len(warned) == 1 and warned[0].startswith(
        f"distilled answers {100 * accuracy['distilled']:.2f}% of the {test} test images "
        "correctly, not clearly better than always answering the most frequent class")


@pytest.fixture(scope="module")
def quantized(data, finetuned):
    images, splits, policy = data
    model, _ = finetuned
    return quantize_model(model, None, images, splits, policy, COMPRESS, RUNTIME, EVALUATE)[0]


def test_trust_nodes_measure_every_variant_and_attack_int8_through_its_source(
        data, finetuned, quantized, caplog):
    images, splits, _ = data
    model, _ = finetuned
    before = _state(model)
    models = {"finetuned": model, "quantized": quantized, "pruned": None}
    corrupted = measure_corruption_robustness(images, splits, EVALUATE, **models)
    # clean + 2 corruptions × 2 severities, for each of the two variants
    assert len(corrupted) == 2 * (1 + 2 * 2)
    assert set(corrupted.variant) == {"finetuned", "quantized"}
    assert corrupted.accuracy.between(0, 1).all()
    attacked = measure_adversarial_robustness(images, splits, COMPRESS, EVALUATE, **models)
    by_variant = attacked.set_index("variant")
    assert by_variant.loc["finetuned", "attack"] == "white-box"
    assert by_variant.loc["quantized", "attack"] == "transfer from finetuned"
    summary, explained, figures = explain_variants(images, splits, EXPLAIN, EVALUATE,
                                                   **models)
    assert set(figures) == {"finetuned.png", "quantized.png"}
    # INT8 has no autograd: occlusion only; the baseline runs it too, for the drift
    assert list(summary[summary.variant == "quantized"].method) == ["occlusion"]
    assert list(summary[summary.variant == "finetuned"].method) == [
        "integrated_gradients", "occlusion"]
    assert len(explained["indices"]) == 2 * 3  # two per class
    quality, _ = evaluate_variants(images, splits, COMPRESS, EVALUATE, **models)
    onnx = measure_onnx(images, splits, COMPRESS, EVALUATE, **models)
    assert onnx.set_index("variant").loc["finetuned", "onnx_top1_agreement"] == 1.0
    assert "quantized" not in set(onnx.variant)  # FX INT8: its ONNX counterpart is onnx_int8
    report, metrics = assemble_report(quality, corrupted, attacked, onnx, summary, EVALUATE)
    row = report.set_index("variant").loc["finetuned"]
    assert row.explained_with == "integrated_gradients"
    assert row.attribution_drift == pytest.approx(0, abs=1e-9)  # against itself
    assert report.set_index("variant").loc["quantized", "explained_with"] == "occlusion"
    for column in ("corruption_accuracy", "corruption_robust_drop", "fgsm_accuracy",
                   "pgd_accuracy", "deletion_auc", "insertion_auc", "attribution_drift",
                   "pareto_size"):
        assert column in report.columns, column
    assert metrics["finetuned.pgd_accuracy"][0]["value"] == row.pgd_accuracy
    # an explanation of an older quantized model (compressed again since explain ran):
    # its numbers are left out of the report, with a warning, not shown as the new one's
    ids = {"finetuned": "m-f", "quantized": "m-q"}
    stale, _ = assemble_report(quality.assign(model_id=quality.variant.map(ids)), corrupted,
                               attacked, onnx, summary.assign(model_id=summary.variant.map(
                                   {**ids, "quantized": "m-older"})), EVALUATE)
    stale = stale.set_index("variant")
    assert np.isnan(stale.loc["quantized", "attribution_drift"])
    assert np.isnan(stale.loc["quantized", "deletion_auc"])
    assert stale.loc["finetuned", "deletion_auc"] == row.deletion_auc
    assert stale.loc["quantized", "pgd_accuracy"] == report.set_index("variant").loc[
        "quantized", "pgd_accuracy"]  # the rest of the row is this model's
    assert "explained other models than those evaluated for quantized" in caplog.text
    assert "explained_model_id" not in stale.columns
    after = model.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before)


def test_explain_takes_what_a_small_class_has_and_says_so(data, finetuned, caplog):
    """More images per class than the test split holds: every test image of such a class
    is explained, with a warning, instead of stopping the run after training."""
    images, splits, _ = data
    test_labels = images.labels[splits["test"]]
    explained = explain_variants(images, splits, {**EXPLAIN, "images_per_class": 99},
                                 EVALUATE, finetuned=finetuned[0])[1]
    assert sorted(explained["indices"]) == sorted(splits["test"].tolist())
    counts = ", ".join(f"'{name}' {int((test_labels == label).sum())}"
                       for label, name in enumerate(images.class_names))
    assert f"explain.images_per_class is 99 but the test split holds fewer images of " \
           f"{len(images.class_names)} class(es), explained on all they have: {counts}" \
           in caplog.text


def test_fewshot_builds_a_vit_for_the_images_it_reads(data):
    """A scratch ViT is built for the images' size (8 px here, not the default 32)."""
    from model_lifecycle.pipelines.fewshot.nodes import evaluate_fewshot, meta_train_encoder  # noqa: PLC0415

    images, _, policy = data
    base = ImageSet(images.images[images.labels < 2], images.labels[images.labels < 2],
                    ("a", "b"), "test")
    novel = ImageSet(images.images, images.labels, ("x", "y", "z"), "test")
    splits = make_splits(base, SplitFractions(val=0.2, test=0.2), labeled_fraction=1.0,
                         seed=0)
    fewshot = {"novel_classes": ["x", "y", "z"], "way": 3, "shots": [1], "queries": 2,
               "episodes": 4, "encoders": ["scratch", "meta_trained"], "arch": "vit",
               "arch_kwargs": {"depth": 1, "width": 8, "heads": 2, "mlp_dim": 8},
               "meta_train": {"episodes": 2, "way": 2, "shot": 1, "queries": 2}}
    encoder, _ = meta_train_encoder(base, splits, novel, policy, None, None, fewshot, RUNTIME)
    assert encoder.spec["image_size"] == 8
    report, _, _ = evaluate_fewshot(base, novel, None, None, encoder, fewshot, RUNTIME)
    assert list(report.encoder) == ["scratch", "meta_trained"]


def test_adversarial_fine_tuning_can_start_from_the_fine_tuned_model(data, finetuned):
    images, splits, policy = data
    model, _ = finetuned
    before = _state(model)
    recipe = {"init": "scratch", "arch_kwargs": {"width": 8}, "epochs": 1, "batch_size": 16,
              "checkpoint": None}
    start = {**recipe, "adversarial": {"init": "finetuned", "lr": 0.01, "check_images": 8,
                                       "check_steps": 2}}
    robust, metrics = train_robust_model(images, splits, policy, None, model, start, RUNTIME)
    # the fine-tuned model's architecture (width 4), not the recipe's (width 8), and its
    # weights moved from there; the input model is untouched
    assert [p.shape for p in robust.parameters()] == [p.shape for p in model.parameters()]
    assert any(not torch.equal(a, b) for a, b in zip(robust.state_dict().values(),
                                                     before.values(), strict=True))
    assert all(torch.equal(v, before[k]) for k, v in model.state_dict().items())
    assert metrics["epochs"][0]["value"] == 1
    scratch, _ = train_robust_model(images, splits, policy, None, None, recipe, RUNTIME)
    first = next(m for m in scratch.modules() if isinstance(m, torch.nn.Conv2d))
    assert first.out_channels == 8  # recipe: the default start
    with pytest.raises(LifecycleError, match="adversarial.init is 'finetuned' but no "
                       "finetuned_model exists"):
        train_robust_model(images, splits, policy, None, None, start, RUNTIME)


def test_adversarial_fine_tuning_from_the_fine_tuned_model_keeps_its_head(
        data, finetuned, monkeypatch):
    """A recipe whose head starts as a linear probe (finetune.head_init) does not refit
    the fine-tuned model's trained head when adversarial fine-tuning starts from it."""
    from model_lifecycle.training import finetune as training  # noqa: PLC0415

    images, splits, policy = data
    probed = []
    monkeypatch.setattr(training, "probe_head", lambda *a, **k: probed.append(1) or 1.0)
    recipe = {"init": "pretrained", "head_init": "linear_probe", "epochs": 1,
              "batch_size": 16, "checkpoint": None,
              "adversarial": {"init": "finetuned", "check_images": 8, "check_steps": 2}}
    train_robust_model(images, splits, policy, None, finetuned[0], recipe, RUNTIME)
    assert probed == []


def test_adversarial_run_can_learn_the_stem_the_recipe_whitens(data):
    images, splits, policy = data
    recipe = {"init": "scratch", "arch_kwargs": {"width": 8}, "epochs": 1, "batch_size": 16,
              "checkpoint": None, "whiten_stem": True,
              "adversarial": {"check_images": 8, "check_steps": 2}}

    def stem_trains(params: dict) -> bool:
        model, _ = train_robust_model(images, splits, policy, None, None, params, RUNTIME)
        weight = next(m for m in model.modules() if isinstance(m, torch.nn.Conv2d)).weight
        half = min(weight.shape[0] // 2, weight[0].numel())
        # whitening filters come as a ± pair, which training would break
        return not torch.equal(weight[:half], -weight[half:2 * half])

    assert not stem_trains(recipe)  # the recipe's frozen whitening filters
    assert stem_trains({**recipe, "adversarial": {**recipe["adversarial"],
                                                  "whiten_stem": False}})
    with pytest.raises(LifecycleError, match="whiten_stem: true would overwrite the "
                       "fine-tuned model's first convolution"):
        parse_params(FinetuneParams, {**recipe, "adversarial": {
            "init": "finetuned", "whiten_stem": True}}, "finetune")


def test_an_absent_input_is_optional_only_when_every_node_reading_it_says_so():
    from kedro.pipeline import Node, Pipeline  # noqa: PLC0415

    from model_lifecycle.hooks import OPTIONAL_INPUTS, _every_reader_ruled  # noqa: PLC0415

    def node(name, *inputs):
        return Node(lambda *a: None, list(inputs), None, name=name)

    rules = [r for r in OPTIONAL_INPUTS["finetuned_model"] if r[0] == "finetune"]
    robust = node("robust", "finetuned_model", "params:finetune")
    evaluate = node("evaluate", "finetuned_model", "params:evaluate")
    assert _every_reader_ruled(Pipeline([robust]), "finetuned_model", rules)
    # evaluate needs the fine-tuned model whatever finetune.adversarial says
    assert not _every_reader_ruled(Pipeline([robust, evaluate]), "finetuned_model", rules)


def test_explain_refuses_an_occlusion_window_covering_the_latest_images(data, finetuned):
    """Run alone (no ingest parameters to check before the run), explain checks the
    window against the images it reads."""
    images, splits, _ = data
    _, height, width = images.image_shape
    with pytest.raises(LifecycleError, match=rf"^explain.occlusion_window 99 covers the "
                                             rf"whole {height}×{width} images \(the latest "
                                             rf"images\)"):
        explain_variants(images, splits, {**EXPLAIN, "occlusion_window": 99}, EVALUATE,
                         finetuned=finetuned[0])


def test_an_onnx_file_that_answers_unlike_its_source_is_named(data, finetuned, caplog):
    """An ONNX variant far from its PyTorch source (here: another model's file in its
    place) gets a warning, not only a number in the report."""
    from model_lifecycle.compression.onnx import OnnxClassifier, export_onnx  # noqa: PLC0415

    images, splits, _ = data
    model = finetuned[0]
    other = copy.deepcopy(model)
    with torch.no_grad():  # every answer moves to the next class
        other.head.weight.copy_(other.head.weight.roll(1, 0))
        other.head.bias.copy_(other.head.bias.roll(1, 0))
    example = torch.from_numpy(images.images[:1]).float() / 255
    onnx = measure_onnx(images, splits, COMPRESS, EVALUATE, finetuned=model,
                        onnx_int8=OnnxClassifier(export_onnx(other, example)))
    assert onnx.set_index("variant").loc["onnx_int8", "onnx_top1_agreement"] < 0.95
    assert "onnx_int8 on ONNX Runtime answers like its PyTorch source on only" in caplog.text
    assert "finetuned on ONNX Runtime answers like" not in caplog.text  # its own export


def test_the_report_shows_what_unstructured_pruning_zeroed(data, finetuned, quantized):
    """An unstructured-pruned model has the fine-tuned model's parameters and file size:
    its sparsity column says what it zeroed (and a compressed file would save)."""
    images, splits, policy = data
    model = finetuned[0]
    unstructured = {**COMPRESS, "prune": {**COMPRESS["prune"], "method": "unstructured",
                                          "structured": None,
                                          "unstructured": {"amount": 0.5}}}
    pruned, _ = prune_model(model, images, splits, policy, unstructured, RUNTIME, EVALUATE)
    report, _ = evaluate_variants(images, splits, COMPRESS, EVALUATE, finetuned=model,
                                  pruned=pruned, quantized=quantized)
    sparsity = report.set_index("variant")["sparsity"]
    assert sparsity["pruned"] == pytest.approx(0.5, abs=0.02)
    assert sparsity["finetuned"] < 0.01
    assert np.isnan(sparsity["quantized"])  # INT8: no float weights to count
