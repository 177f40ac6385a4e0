"""The linear-probe head (LP-FT's first half) against scikit-learn's own fitted pipeline."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from model_lifecycle.augment.config import AugmentParams, policy_from_artifact, resolve_policy
from model_lifecycle.models import build_model
from model_lifecycle.models.head import MISSING_CLASS_LOGIT, probe_head
from model_lifecycle.models.predict import accuracy, predict
from model_lifecycle.training.config import FinetuneParams, RuntimeParams
from model_lifecycle.training.finetune import finetune, settle_batch_norms


def _model(classes: int, seed: int = 0):
    torch.manual_seed(seed)
    return build_model("small_cnn", classes, 1, input_size=(8, 8), width=4)


def _data(classes: int, n: int = 60, seed: int = 0):
    rng = np.random.default_rng(seed)
    labels = np.repeat(np.arange(classes), n // classes)
    images = rng.integers(0, 60, (len(labels), 1, 8, 8), dtype=np.uint8)
    images[np.arange(len(labels)), 0, labels * 2, :] = 255  # a stripe per class
    return images, labels


def _reference(model, images, labels, indices):
    features = predict(model.encoder, images, indices).numpy().astype(np.float64)
    probe = make_pipeline(StandardScaler(), LogisticRegression(max_iter=2000))
    return probe.fit(features, labels[indices]), features


@pytest.mark.parametrize("classes", [2, 3])
def test_the_head_computes_the_fitted_logistic_regression(classes):
    images, labels = _data(classes)
    model = _model(classes)
    indices = np.arange(len(labels))
    score = probe_head(model, images, labels, indices)
    reference, features = _reference(model, images, labels, indices)
    logits = predict(model, images, indices).double()
    expected = torch.from_numpy(reference.predict_proba(features))
    assert torch.allclose(logits.softmax(1), expected, atol=1e-4)
    assert score == pytest.approx(reference.score(features, labels[indices]))
    decision = reference.decision_function(features)
    if classes == 2:  # one logit in scikit-learn: the difference of ours
        assert np.allclose(logits[:, 1] - logits[:, 0], decision, atol=1e-4)
    else:
        assert np.allclose(logits.numpy(), decision, atol=1e-4)


def test_a_large_labeled_set_is_probed_on_a_seeded_sample():
    images, labels = _data(3, n=90)
    indices = np.arange(len(labels))
    heads = []
    for seed in (0, 0, 1):
        model = _model(3)
        probe_head(model, images, labels, indices, seed=seed, max_images=30)
        heads.append(model.head.weight.detach().clone())
    assert torch.equal(heads[0], heads[1])
    assert not torch.allclose(heads[0], heads[2])
    full = _model(3)
    probe_head(full, images, labels, indices)  # 90 images: under the default cap
    reference, _ = _reference(_model(3), images, labels, indices)
    assert np.allclose(reference[1].coef_ / reference[0].scale_,
                       full.head.weight.detach().numpy(), rtol=1e-4, atol=1e-6)


def test_a_class_missing_from_the_labeled_images_starts_far_below_the_others():
    images, labels = _data(3)
    model = _model(4)  # class 3 has no image
    indices = np.arange(len(labels))
    probe_head(model, images, labels, indices)
    assert torch.all(model.head.weight[3] == 0)
    bias = model.head.bias.detach()
    assert bias[3].item() == pytest.approx(bias[:3].min().item() + MISSING_CLASS_LOGIT)
    assert not (predict(model, images, indices).argmax(1) == 3).any()


def test_finetune_starts_from_the_probe_and_only_the_head_moves_under_linear_probe():
    images, labels = _data(3, n=90)
    order = np.random.default_rng(1).permutation(len(labels))
    splits = {"train_labeled": order[:30], "val": order[30:60], "test": order[60:]}
    encoder_state = {k: v.clone() for k, v in _model(3).encoder.state_dict().items()}
    random_head = _model(3)
    params = FinetuneParams(strategy="linear_probe", epochs=0.01, batch_size=8,
                            head_init="linear_probe")
    policy = policy_from_artifact(resolve_policy(AugmentParams()), "supervised")
    probed = _model(3)
    probed.encoder.requires_grad_(False)
    finetune(probed, images, labels, splits, policy, params, RuntimeParams(num_threads=1),
             torch.device("cpu"))
    reference = _model(3)
    probe_head(reference, images, labels, splits["train_labeled"])
    # a hundredth of an epoch (one batch) barely moves the probe's head (whose weights are
    # large: the standardisation's 1/σ of this tiny random encoder's features is folded in)
    assert torch.allclose(probed.head.weight, reference.head.weight, rtol=1e-3, atol=1e-3)
    assert not torch.allclose(probed.head.weight, random_head.head.weight, rtol=0.5)
    for key, value in probed.encoder.state_dict().items():
        assert torch.equal(value, encoder_state[key])
    assert accuracy(probed, images, labels, splits["val"]) > 0.9


@pytest.mark.parametrize("runtime", [
    RuntimeParams(num_threads=1),
    RuntimeParams(num_threads=2, distributed={"nproc_per_node": 2}),  # DDP: two ranks
], ids=["one process", "two ranks"])
def test_fine_tuning_that_loses_the_probe_keeps_the_probe(caplog, runtime):
    """The kept epoch is the best on val, and the probe it starts from is a candidate too:
    a recipe too harsh for the images (here a learning rate that wrecks the model) must
    not leave a model worse than where it started, in one process or on several ranks."""
    images, labels = _data(3, n=90)
    order = np.random.default_rng(1).permutation(len(labels))
    splits = {"train_labeled": order[:30], "val": order[30:60], "test": order[60:]}
    params = FinetuneParams(epochs=2, batch_size=8, head_init="linear_probe",
                            optimizer={"name": "sgd", "lr": 1e4})
    policy = policy_from_artifact(resolve_policy(AugmentParams()), "supervised")
    model = _model(3)
    with caplog.at_level("WARNING"):
        result, scores = finetune(model, images, labels, splits, policy, params, runtime,
                                  torch.device("cpu"))
    assert result.best_value < 0.9  # every epoch wrecked
    assert scores["val_accuracy"] > 0.9  # the probe, kept
    assert scores["val_accuracy"] == accuracy(model, images, labels, splits["val"])
    assert "no epoch beat the linear probe it started from on val" in caplog.text


def test_a_scratch_model_keeps_its_random_head():
    images, labels = _data(3, n=90)
    splits = {"train_labeled": np.arange(30), "val": np.arange(30, 60),
              "test": np.arange(60, 90)}
    model, untouched = _model(3), _model(3)
    params = FinetuneParams(init="scratch", head_init="linear_probe", epochs=0.01,
                            batch_size=8, optimizer={"name": "sgd", "lr": 1e-9})
    policy = policy_from_artifact(resolve_policy(AugmentParams()), "supervised")
    finetune(model, images, labels, splits, policy, params, RuntimeParams(num_threads=1),
             torch.device("cpu"))
    assert torch.allclose(model.head.weight, untouched.head.weight, atol=1e-6)


def test_batch_norms_that_will_train_are_settled_before_the_probe():
    """The probe is fitted on eval-mode features, full fine-tuning normalises with batch
    statistics: after a short pretraining the running statistics are far from the
    batches' (here: scrambled), and without settling them the probe's head fits features
    training never sees (the default run collapsed to chance after a 1-epoch SimCLR)."""
    images, labels = _data(3, n=90)
    indices = np.arange(len(labels))
    model = _model(3)
    norms = [m for m in model.encoder.modules() if isinstance(m, torch.nn.BatchNorm2d)]
    assert norms
    for norm in norms:  # stale statistics
        norm.running_mean.add_(3.0)
        norm.running_var.mul_(40.0)
    x = torch.from_numpy(images).float() / 255
    with torch.no_grad():
        batch_features = model.encoder.train()(x)
        stale = model.encoder.eval()(x)
    settle_batch_norms(model, images, indices, batch_size=len(indices), seed=0)
    with torch.no_grad():
        settled = model.encoder.eval()(x)
    # one batch of every image: its statistics are the running ones (the variance
    # unbiased, hence the tolerance)
    assert torch.allclose(settled, batch_features, atol=0.05)
    assert not torch.allclose(stale, batch_features, atol=0.5)
    assert [m.momentum for m in norms] == [0.1] * len(norms)  # as they were
    # frozen batch norms (a linear probe's encoder) keep their statistics
    frozen = _model(3)
    frozen.encoder.requires_grad_(False)
    before = {k: v.clone() for k, v in frozen.encoder.state_dict().items()}
    settle_batch_norms(frozen, images, indices, batch_size=16, seed=0)
    assert all(torch.equal(v, before[k]) for k, v in frozen.encoder.state_dict().items())
