"""Both self-supervised methods train end to end on tiny data and report their quality."""

import math

import numpy as np
import pytest
import torch

from model_lifecycle.augment.config import ViewPolicy
from model_lifecycle.models import build_model
from model_lifecycle.training.config import RuntimeParams
from model_lifecycle.training.pretrain import PretrainParams, pretrain


@pytest.mark.parametrize("method", ["simclr", "simsiam"])
def test_pretraining_moves_the_encoder_and_reports_quality(method):
    rng = np.random.default_rng(0)
    labels = np.repeat(np.arange(3), 40)
    images = rng.integers(0, 50, (120, 1, 8, 8), dtype=np.uint8)
    images[np.arange(120), 0, :, labels * 3] = 255  # a vertical stripe per class
    splits = {"train_labeled": np.arange(0, 120, 4), "train_unlabeled": np.arange(1, 120, 4),
              "val": np.arange(2, 120, 4)}
    torch.manual_seed(0)
    model = build_model("small_cnn", 3, 1, width=4)
    head_before = model.head.weight.clone()
    encoder_before = [p.clone() for p in model.encoder.parameters()]
    params = PretrainParams(method=method, epochs=2, batch_size=20, hidden_dim=16,
                            projection_dim=8, eval_every=1)
    policy = ViewPolicy.model_validate({"random_crop": {"padding": 1}})
    result, quality = pretrain(model, images, labels, splits, policy, params,
                               RuntimeParams(), torch.device("cpu"))
    assert [epoch for epoch, _ in result.history["train_loss"]] == [0, 1]
    assert all(math.isfinite(v) for _, v in result.history["train_loss"])
    assert [epoch for epoch, _ in result.history["knn_accuracy"]] == [0, 1]
    assert 0 <= quality["knn_accuracy"] <= 1 and 0 <= quality["linear_probe_accuracy"] <= 1
    assert torch.equal(model.head.weight, head_before)  # only the encoder trains
    assert any(not torch.equal(a, b) for a, b in zip(encoder_before,
                                                     model.encoder.parameters(), strict=True))
