"""The Prototypical Networks head (Snell, Swersky and Zemel, "Prototypical Networks for
Few-shot Learning", NeurIPS 2017, arXiv 1703.05175): each class is the mean of its
support features, a query's logits are minus its squared Euclidean distances to them.

Usage::

    logits = protonet_logits(support, query)  # support W×S×D, query M×D → M×W
    loss, acc = protonet_loss(features.view(W, S + Q, D), shot=S)

easyfsl's head scores with the plain (not squared) distance and runs its backbone on a
3×84×84 probe image when built; here features come precomputed, from images of any size
and channel count, so the head is these few lines.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


def prototypes(support: torch.Tensor) -> torch.Tensor:
    """Class means: support …×W×S×D → …×W×D."""
    return support.mean(-2)


def protonet_logits(support: torch.Tensor, query: torch.Tensor) -> torch.Tensor:
    """``-‖q − c_w‖²`` for every query ``q`` and class mean ``c_w``.

    ``support`` …×W×S×D (row ``w`` holds class ``w``'s support features), ``query``
    …×M×D; returns …×M×W. Leading dimensions batch episodes.
    """
    centres = prototypes(support)                      # …×W×D
    diff = query.unsqueeze(-2) - centres.unsqueeze(-3)  # …×M×W×D
    return -diff.pow(2).sum(-1)


def protonet_loss(episode: torch.Tensor, *, shot: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Cross-entropy of the queries of one episode and their accuracy.

    ``episode`` W×(S+Q)×D: class ``w``'s ``shot`` support features, then its queries.
    """
    way, per_class, dim = episode.shape
    query = episode[:, shot:].reshape(-1, dim)  # (W·Q)×D, class-major
    target = torch.arange(way, device=episode.device).repeat_interleave(per_class - shot)
    logits = protonet_logits(episode[:, :shot], query)
    return F.cross_entropy(logits, target), (logits.argmax(1) == target).float().mean()


@torch.no_grad()
def episode_accuracies(features: torch.Tensor, episodes: torch.Tensor, *, shot: int,
                       chunk: int = 100) -> torch.Tensor:
    """Query accuracy of each episode, answered by the head on precomputed features.

    ``features`` N×D; ``episodes`` E×W×(S+Q) positions into it (as
    :func:`model_lifecycle.data.episodes.sample_episodes` draws them). Returns E floats.
    """
    way, per_class = episodes.shape[1:]
    target = torch.arange(way).repeat_interleave(per_class - shot)
    out = []
    for start in range(0, len(episodes), chunk):
        batch = features[episodes[start:start + chunk]]  # e×W×(S+Q)×D
        query = batch[:, :, shot:].flatten(1, 2)         # e×(W·Q)×D
        logits = protonet_logits(batch[:, :, :shot], query)
        out.append((logits.argmax(-1) == target).float().mean(1))
    return torch.cat(out) if out else torch.empty(0)
