import numpy as np
import pytest

from model_lifecycle.data.config import SplitFractions
from model_lifecycle.data.imageset import ImageSet
from model_lifecycle.data.splits import SPLIT_NAMES, checked_splits, make_splits
from model_lifecycle.errors import LifecycleError


def _images(counts, source_test=None, seed=0):
    labels = np.repeat(np.arange(len(counts)), counts)
    rng = np.random.default_rng(seed)
    images = rng.integers(0, 256, (len(labels), 1, 4, 4), dtype=np.uint8)
    return ImageSet(images, labels, tuple(f"c{i}" for i in range(len(counts))), "test",
                    source_test=source_test)


def _split(data, val=0.1, test=0.2, labeled=0.5, seed=0):
    return make_splits(data, SplitFractions(val=val, test=test), labeled_fraction=labeled,
                       seed=seed)


@pytest.mark.parametrize("labeled", [1.0, 0.5, 0.1])
def test_splits_partition_every_image_once(labeled):
    data = _images([100, 60, 40])
    splits = _split(data, labeled=labeled)
    joined = np.concatenate([splits[name] for name in SPLIT_NAMES])
    assert sorted(joined.tolist()) == list(range(len(data)))
    if labeled == 1.0:
        assert len(splits["train_unlabeled"]) == 0


def test_each_split_keeps_the_class_proportions():
    data = _images([300, 150, 50])
    splits = _split(data, val=0.1, test=0.2, labeled=0.2)
    overall = np.bincount(data.labels) / len(data)
    for name in SPLIT_NAMES:
        share = np.bincount(data.labels[splits[name]], minlength=3) / len(splits[name])
        np.testing.assert_allclose(share, overall, atol=0.03, err_msg=name)


def test_seeded_and_sensitive_to_the_seed():
    data = _images([50, 50])
    a, b, c = _split(data, seed=1), _split(data, seed=1), _split(data, seed=2)
    assert all(np.array_equal(a[n], b[n]) for n in SPLIT_NAMES)
    assert not np.array_equal(a["test"], c["test"])


def test_source_test_split_is_used_as_is():
    source_test = np.zeros(100, dtype=bool)
    source_test[::10] = True
    data = _images([50, 50], source_test=source_test)
    splits = _split(data, test=0.5)
    np.testing.assert_array_equal(splits["test"], np.flatnonzero(source_test))


def test_class_too_small_to_stratify():
    data = _images([30, 30, 1])
    with pytest.raises(LifecycleError, match=r"class 'c2' has only 1 image"):
        _split(data)


def test_too_few_images_for_a_held_out_split():
    data = _images([3, 3, 3, 3])
    with pytest.raises(LifecycleError, match=r"Cannot stratify ingest.splits.val"):
        _split(data, test=0.0, val=0.1)


def test_splits_made_for_other_images_are_refused():
    data = _images([20, 20])
    splits = _split(data)
    assert set(checked_splits(data, splits)) == set(SPLIT_NAMES)
    other = _images([20, 20], seed=1)
    with pytest.raises(LifecycleError, match=r"run `kedro run --pipelines=ingest` again"):
        checked_splits(other, splits)


def test_the_labeled_fraction_error_quotes_the_value_the_user_set():
    data = _images([12, 12, 12])
    with pytest.raises(LifecycleError) as error:
        _split(data, val=0.1, test=0.2, labeled=0.05)
    message = str(error.value)
    assert "ingest.labeled_fraction = 0.05 over" in message
    assert "0.95" not in message


def test_a_tiny_folder_is_told_which_fractions_work():
    data = _images([10, 10, 10])  # 30 images: val 0.1 of 24 holds 3, one per class
    with pytest.raises(LifecycleError) as error:
        _split(data, val=0.1, test=0.2, labeled=0.05)
    message = str(error.value)
    low, high = (float(v) for v in
                 message.split("set ingest.labeled_fraction between ")[1].split(" (", maxsplit=1)[0]
                 .split(" and "))
    assert 0 < low < high < 1
    for fraction in (low, high, 1.0):  # the advice works
        splits = _split(data, val=0.1, test=0.2, labeled=fraction)
        assert len(np.unique(data.labels[splits["train_labeled"]])) == 3


def test_a_class_with_one_image_asks_for_more_images():
    with pytest.raises(LifecycleError, match=r"class 'c2' has only 1 image\(s\); add images "
                                             r"\(at least 2 per class"):
        _split(_images([20, 20, 1]))


def test_a_source_test_split_without_a_training_class_is_reported(caplog):
    from model_lifecycle.data.report import dataset_report  # noqa: PLC0415

    data = _images([20, 20, 20], source_test=np.r_[np.zeros(50, bool), np.ones(10, bool)])
    with caplog.at_level("WARNING"):
        splits = _split(data, test=0.0)
    assert "holds no image of class 'c0'" in caplog.text
    assert "class 'c1'" in caplog.text and "class 'c2'" not in caplog.text
    report = dataset_report(data, splits, {})
    assert report["classes_missing_from_test"] == ["c0", "c1"]
