"""Class hold-out and few-shot episodes: what leaves the training data, and what an
episode may contain."""

from __future__ import annotations

import numpy as np
import pytest

from model_lifecycle.data.episodes import check_episodes, sample_episodes
from model_lifecycle.data.holdout import hold_out_classes
from model_lifecycle.data.imageset import ImageSet
from model_lifecycle.errors import LifecycleError

NAMES = ("ant", "bee", "cat", "dog", "eel")
KEYS = ("fewshot.way", "fewshot.shots", "fewshot.queries")


def _data(per_class: int = 6, with_test: bool = True) -> ImageSet:
    labels = np.repeat(np.arange(len(NAMES)), per_class)
    images = np.arange(len(labels), dtype=np.uint8).reshape(-1, 1, 1, 1).repeat(2, 2)
    return ImageSet(images=np.ascontiguousarray(images), labels=labels, class_names=NAMES,
                    source="test", source_test=(np.arange(len(labels)) % 3 == 0)
                    if with_test else None, skipped=("x.png: broken",))


def test_no_hold_out_returns_the_data_itself_and_no_novel_image():
    data = _data()
    base, novel = hold_out_classes(data, ())
    assert base is data  # the default run is the run it always was
    assert len(novel) == 0 and novel.class_names == ()
    assert novel.image_shape == data.image_shape


def test_hold_out_moves_every_novel_image_out_and_renumbers_the_rest():
    data = _data()
    base, novel = hold_out_classes(data, ("dog", "bee"))
    assert base.class_names == ("ant", "cat", "eel")
    assert novel.class_names == ("bee", "dog")  # in the source's class order
    # each image (its pixel value is its index) lands on exactly one side
    base_ids, novel_ids = base.images[:, 0, 0, 0], novel.images[:, 0, 0, 0]
    assert set(base_ids).isdisjoint(novel_ids)
    assert sorted([*base_ids, *novel_ids]) == list(range(len(data)))
    # labels follow the images and name the same classes as before
    for part in (base, novel):
        ids = part.images[:, 0, 0, 0]
        assert [part.class_names[c] for c in part.labels] == \
               [data.class_names[data.labels[i]] for i in ids]
        assert np.array_equal(part.source_test, data.source_test[ids])
    assert base.skipped == data.skipped and novel.skipped == ()


def test_an_unknown_class_is_one_sentence_listing_the_classes():
    with pytest.raises(LifecycleError, match=r"^fewshot.novel_classes names 'cow', which "
                       r"the data does not hold: the classes are ant, bee, cat, dog, eel\.$"):
        hold_out_classes(_data(), ("cat", "cow"))


@pytest.mark.parametrize("novel", [NAMES, NAMES[1:]])
def test_fewer_than_two_base_classes_are_refused(novel):
    with pytest.raises(LifecycleError, match=rf"holds out {len(novel)} of the 5 classes, "
                       rf"leaving {5 - len(novel)} to train on: hold out at most 3\."):
        hold_out_classes(_data(with_test=False), novel)


@pytest.mark.parametrize(("way", "shot", "queries"), [(2, 1, 3), (3, 2, 4), (5, 5, 1)])
def test_episodes_hold_distinct_classes_and_never_share_images(way, shot, queries):
    labels = np.repeat(np.array([3, 7, 8, 9, 11, 12]), 6)  # any label values
    episodes = sample_episodes(labels, way=way, shot=shot, queries=queries, episodes=50,
                               rng=np.random.default_rng(0))
    assert episodes.shape == (50, way, shot + queries)
    for episode in episodes:
        classes = labels[episode]
        assert (classes == classes[:, :1]).all()  # one class per row
        assert len(set(classes[:, 0])) == way  # distinct classes
        support, query = episode[:, :shot].ravel(), episode[:, shot:].ravel()
        assert set(support).isdisjoint(query)
        assert len(set(episode.ravel())) == episode.size  # no image twice at all


def test_episodes_draw_only_from_the_given_images_and_are_seeded():
    novel = np.array([0, 0, 0, 1, 1, 1, 2, 2, 2])
    a = sample_episodes(novel, way=2, shot=1, queries=2, episodes=20,
                        rng=np.random.default_rng(5))
    b = sample_episodes(novel, way=2, shot=1, queries=2, episodes=20,
                        rng=np.random.default_rng(5))
    assert np.array_equal(a, b)
    assert a.min() >= 0 and a.max() < len(novel)
    # every class and image turns up over enough episodes (the draw is not stuck)
    assert set(a.ravel()) == set(range(len(novel)))


def test_way_larger_than_the_classes_is_refused():
    with pytest.raises(LifecycleError, match=r"^fewshot.way = 4 but the novel images hold 3 "
                       r"classes \(ant, bee, cat\): lower fewshot.way to at most 3\.$"):
        check_episodes(np.repeat([0, 1, 2], 30), NAMES, way=4, shot=1, queries=1, keys=KEYS,
                       pool="novel")


def test_shot_and_queries_beyond_a_class_are_refused_naming_it():
    labels = np.array([0] * 30 + [1] * 12 + [2] * 30)
    with pytest.raises(LifecycleError, match=r"^Class 'bee' has 12 novel images but "
                       r"fewshot.shots = 5 with fewshot.queries = 15 needs 20 per class: "
                       r"lower them \(together at most 12\) or add images of 'bee'\.$"):
        check_episodes(labels, NAMES, way=3, shot=5, queries=15, keys=KEYS, pool="novel")
    check_episodes(labels, NAMES, way=3, shot=2, queries=10, keys=KEYS, pool="novel")
