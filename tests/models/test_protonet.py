"""The Prototypical Networks head against a brute-force reference."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from model_lifecycle.data.episodes import sample_episodes
from model_lifecycle.models.protonet import episode_accuracies, protonet_logits, protonet_loss


def _reference_logits(support: np.ndarray, query: np.ndarray) -> np.ndarray:
    """Loops: class mean by summing its rows, then every squared distance by hand."""
    way, shot, dim = support.shape
    centres = np.zeros((way, dim))
    for w in range(way):
        for s in range(shot):
            centres[w] += support[w, s] / shot
    out = np.zeros((len(query), way))
    for i, q in enumerate(query):
        for w in range(way):
            out[i, w] = -sum((q[d] - centres[w, d]) ** 2 for d in range(dim))
    return out


@pytest.mark.parametrize(("way", "shot", "n_query", "dim"),
                         [(2, 1, 3, 4), (5, 5, 15, 8), (3, 4, 1, 16)])
def test_logits_are_minus_squared_distances_to_class_means(way, shot, n_query, dim):
    g = torch.Generator().manual_seed(way * shot)
    support = torch.randn(way, shot, dim, generator=g, dtype=torch.float64)
    query = torch.randn(n_query, dim, generator=g, dtype=torch.float64)
    logits = protonet_logits(support, query)
    assert logits.shape == (n_query, way)
    np.testing.assert_allclose(logits.numpy(), _reference_logits(support.numpy(),
                                                                 query.numpy()), rtol=1e-10)
    # the same through torch.cdist, a second way of computing it
    cdist = torch.cdist(query, support.mean(1)) ** 2
    np.testing.assert_allclose(logits.numpy(), -cdist.numpy(), rtol=1e-8, atol=1e-10)


def test_loss_is_cross_entropy_of_the_queries_against_their_rows():
    g = torch.Generator().manual_seed(0)
    way, shot, queries, dim = 4, 3, 5, 6
    episode = torch.randn(way, shot + queries, dim, generator=g, dtype=torch.float64)
    loss, accuracy = protonet_loss(episode, shot=shot)
    support = episode[:, :shot].numpy()
    reference = torch.from_numpy(_reference_logits(
        support, episode[:, shot:].reshape(-1, dim).numpy()))
    target = torch.tensor([w for w in range(way) for _ in range(queries)])
    assert loss.item() == pytest.approx(F.cross_entropy(reference, target).item(), rel=1e-9)
    assert accuracy.item() == pytest.approx((reference.argmax(1) == target).double().mean())


def test_separable_classes_are_answered_perfectly_and_gradients_flow():
    centres = torch.tensor([[0.0, 0.0], [10.0, 0.0], [0.0, 10.0]])
    episode = (centres[:, None, :] + 0.1 * torch.randn(3, 6, 2)).requires_grad_(True)
    loss, accuracy = protonet_loss(episode, shot=2)
    assert accuracy.item() == 1.0
    loss.backward()
    assert torch.isfinite(episode.grad).all() and episode.grad.abs().sum() > 0


def test_batched_episode_accuracies_match_one_episode_at_a_time():
    rng = np.random.default_rng(1)
    labels = np.repeat(np.arange(6), 10)
    features = torch.from_numpy(rng.normal(size=(60, 5)) + labels[:, None] * 0.5)
    episodes = sample_episodes(labels, way=4, shot=2, queries=3, episodes=37, rng=rng)
    batched = episode_accuracies(features.float(), torch.from_numpy(episodes), shot=2,
                                 chunk=10)
    for e, drawn in enumerate(episodes):
        logits = _reference_logits(features[drawn[:, :2]].numpy(),
                                   features[drawn[:, 2:].ravel()].numpy())
        expected = (logits.argmax(1) == np.repeat(np.arange(4), 3)).mean()
        assert batched[e].item() == pytest.approx(expected)
