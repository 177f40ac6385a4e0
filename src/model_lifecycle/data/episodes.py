"""N-way K-shot episodes: seeded index arrays, support and query drawn without overlap.

easyfsl's ``TaskSampler`` draws from Python's global ``random`` and needs a Dataset
object; the evaluation here wants plain, seeded index arrays that every encoder answers
alike, so the sampler is these few lines of numpy.
"""

from __future__ import annotations

import numpy as np

from model_lifecycle.errors import LifecycleError


def sample_episodes(labels: np.ndarray, *, way: int, shot: int, queries: int,
                    episodes: int, rng: np.random.Generator) -> np.ndarray:
    """Episodes as positions into ``labels``: an int64 array E×way×(shot + queries).

    Each episode draws ``way`` distinct classes, then ``shot + queries`` distinct images of
    each; the first ``shot`` of a class are its support images, the rest its queries, so
    support and query never share an image. Episode-local label ``w`` is row ``w``.
    """
    classes = np.unique(labels)
    members = {c: np.flatnonzero(labels == c) for c in classes}
    out = np.empty((episodes, way, shot + queries), dtype=np.int64)
    for e in range(episodes):
        for w, c in enumerate(rng.choice(classes, way, replace=False)):
            out[e, w] = rng.choice(members[c], shot + queries, replace=False)
    return out


def seeded_episodes(labels: np.ndarray, *, way: int, shots: tuple[int, ...] | list[int],
                    queries: int, episodes: int, seed: int) -> dict[int, np.ndarray]:
    """One :func:`sample_episodes` draw per shot count, each seeded with
    ``(seed, shot)``: the episodes every encoder of the few-shot evaluation answers."""
    return {shot: sample_episodes(labels, way=way, shot=shot, queries=queries,
                                  episodes=episodes, rng=np.random.default_rng((seed, shot)))
            for shot in shots}


def check_episodes(labels: np.ndarray, class_names: tuple[str, ...], *, way: int,
                   shot: int, queries: int, keys: tuple[str, str, str], pool: str,
                   more: str | None = None) -> None:
    """Refuse, in one sentence, episodes that ``labels`` cannot fill: fewer classes than
    ``way``, or a class with fewer than ``shot + queries`` images. ``keys`` name the way,
    shot and queries parameters; ``pool`` says which images these are; ``more``: how to
    get more of them (default: add images of the class)."""
    way_key, shot_key, queries_key = keys
    present, counts = np.unique(labels, return_counts=True)
    if len(present) < way:
        raise LifecycleError(
            f"{way_key} = {way} but the {pool} images hold {len(present)} classes "
            f"({', '.join(class_names[c] for c in present)}): lower {way_key} to at most "
            f"{len(present)}.")
    need = shot + queries
    if counts.min() < need:
        name, count = class_names[present[counts.argmin()]], int(counts.min())
        raise LifecycleError(
            f"Class '{name}' has {count} {pool} images but {shot_key} = {shot} with "
            f"{queries_key} = {queries} needs {need} per class: lower them (together at "
            f"most {count}) or {more or f'add images of {name!r}'}.")
