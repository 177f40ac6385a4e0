import hashlib
import json

import mlflow
import numpy as np
import pandas as pd
import pytest
from kedro.io.core import DatasetError, Version

from model_lifecycle.data.imageset import ImageSet
from model_lifecycle.io import ImageSetDataset, JsonDataset, NpzDataset, TableDataset, arrays


def _image_set():
    rng = np.random.default_rng(0)
    return ImageSet(rng.integers(0, 256, (6, 3, 4, 5), dtype=np.uint8),
                    np.array([0, 1, 2, 0, 1, 2]), ("a", "b", "c"), "image_folder",
                    source_test=np.array([0, 0, 0, 0, 1, 1], dtype=bool),
                    skipped=("x.png: broken",))


def test_image_set_round_trip_is_exact(tmp_path):
    dataset = ImageSetDataset(filepath=str(tmp_path / "images.npz"))
    original = _image_set()
    dataset.save(original)
    loaded = dataset.load()
    np.testing.assert_array_equal(loaded.images, original.images)
    np.testing.assert_array_equal(loaded.labels, original.labels)
    np.testing.assert_array_equal(loaded.source_test, original.source_test)
    assert (loaded.class_names, loaded.source, loaded.skipped) == \
        (original.class_names, original.source, original.skipped)
    assert loaded.fingerprint() == original.fingerprint()


def test_versions_accumulate_and_latest_wins(tmp_path):
    path = str(tmp_path / "splits.npz")
    NpzDataset(filepath=path, version=Version(None, "2026-01-01T00.00.00.000Z")).save(
        {"test": np.arange(3)})
    NpzDataset(filepath=path, version=Version(None, "2026-01-02T00.00.00.000Z")).save(
        {"test": np.arange(5)})
    assert len(NpzDataset(filepath=path, version=Version(None, None)).load()["test"]) == 5
    first = NpzDataset(filepath=path, version=Version("2026-01-01T00.00.00.000Z", None))
    assert len(first.load()["test"]) == 3


def test_a_run_reads_back_what_it_saved_while_another_run_saves_a_newer_version(tmp_path):
    """Two `kedro run`s in one project: each run's later nodes must read its own
    encoder. A run's versions carry its start time, so the run started second, if it
    saves first, holds the latest version when the first run saves its own."""
    path = str(tmp_path / "splits.npz")
    NpzDataset(filepath=path, version=Version(None, "2026-01-02T00.00.00.000Z")).save(
        {"test": np.arange(5)})  # the other run, started later, saved first
    ours = NpzDataset(filepath=path, version=Version(None, "2026-01-01T00.00.00.000Z"))
    ours.save({"test": np.arange(3)})
    assert len(ours.load()["test"]) == 3
    pinned = NpzDataset(filepath=path, version=Version("2026-01-02T00.00.00.000Z",
                                                       "2026-01-03T00.00.00.000Z"))
    pinned.save({"test": np.arange(7)})
    assert len(pinned.load()["test"]) == 5  # --load-versions still wins
    assert len(NpzDataset(filepath=path, version=Version(None, None)).load()["test"]) == 7
    # (a new run, reading what it did not write, gets the latest: Kedro's rule)


def test_a_save_that_dies_mid_write_leaves_the_latest_version_intact(tmp_path, monkeypatch):
    path = str(tmp_path / "splits.npz")
    NpzDataset(filepath=path, version=Version(None, "2026-01-01T00.00.00.000Z")).save(
        {"test": np.arange(3)})
    failing = NpzDataset(filepath=path, version=Version(None, "2026-01-02T00.00.00.000Z"))

    def crash(*args, **kwargs):
        raise OSError("disk full")

    monkeypatch.setattr(failing._fs, "mv", crash)
    with pytest.raises(DatasetError, match="disk full"):
        failing.save({"test": np.arange(7)})
    assert list((tmp_path / "splits.npz").rglob("*.tmp-*")) == []
    assert not (tmp_path / "splits.npz" / "2026-01-02T00.00.00.000Z" / "splits.npz").exists()
    latest = NpzDataset(filepath=path, version=Version(None, None)).load()
    np.testing.assert_array_equal(latest["test"], np.arange(3))


def test_object_arrays_are_refused_before_anything_is_written(tmp_path):
    dataset = NpzDataset(filepath=str(tmp_path / "x.npz"))
    with pytest.raises(DatasetError, match="Array 'bad' holds Python objects"):
        dataset.save({"bad": np.array([object()])})
    assert not (tmp_path / "x.npz").exists()


def test_npz_with_pickled_objects_is_refused(tmp_path):
    target = tmp_path / "evil.npz"
    np.savez(target, payload=np.array([{"x": 1}], dtype=object))
    with pytest.raises(DatasetError, match="not a plain-array .npz"):
        NpzDataset(filepath=str(target)).load()


def test_json_dataset_round_trip_and_mlflow_logging(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    mlflow.set_tracking_uri(f"sqlite:///{tmp_path / 'mlflow.db'}")
    mlflow.set_experiment("datasets")  # not the experiment an earlier test made active
    dataset = JsonDataset(filepath=str(tmp_path / "policy.json"),
                          version=Version(None, None), mlflow_artifact_path="augment")
    with mlflow.start_run() as run:
        dataset.save({"format": 1, "steps": [1, 2]})
    assert dataset.load() == {"format": 1, "steps": [1, 2]}
    logged = mlflow.artifacts.download_artifacts(run_id=run.info.run_id,
                                                 artifact_path="augment/policy.json",
                                                 dst_path=str(tmp_path / "dl"))
    assert json.loads(open(logged).read()) == {"format": 1, "steps": [1, 2]}


def test_table_dataset_round_trips_and_previews_for_kedro_viz(tmp_path):
    table = pd.DataFrame({"file": ["a.png", "b.png"], "class": ["7", None],
                          "confidence": [0.9, None]})
    path = str(tmp_path / "predictions.csv")
    TableDataset(filepath=path, version=Version(None, None)).save(table)
    dataset = TableDataset(filepath=path, version=Version(None, None),
                           load_args={"dtype": {"class": str}})
    pd.testing.assert_frame_equal(dataset.load(), table.astype({"class": object}),
                                  check_dtype=False)
    assert dataset.load()["class"][0] == "7"  # a name, not the number 7
    preview = dataset.preview(nrows=1)
    assert preview["columns"] == ["file", "class", "confidence"]
    assert preview["data"] == [["a.png", "7", 0.9]]


def _large_image_set(n=300):
    rng = np.random.default_rng(1)
    return ImageSet(rng.integers(0, 256, (n, 3, 8, 8), dtype=np.uint8),
                    np.arange(n) % 3, ("a", "b", "c"), "cifar10",
                    source_test=np.arange(n) >= n - 50)


def test_image_set_pixels_load_as_a_read_only_memory_map(tmp_path):
    path = str(tmp_path / "images.npz")
    original = _large_image_set()
    ImageSetDataset(filepath=path, version=Version(None, "2026-01-01T00.00.00.000Z")).save(
        original)
    loaded = ImageSetDataset(filepath=path, version=Version(None, None),
                             in_memory_below=0).load()
    assert isinstance(loaded.images, np.memmap) and loaded.images.mode == "r"
    assert not loaded.images.flags.writeable
    np.testing.assert_array_equal(loaded.images, original.images)
    np.testing.assert_array_equal(loaded.source_test, original.source_test)
    assert loaded.fingerprint() == original.fingerprint()
    # the file stays a plain .npz: numpy reads it as before
    [file] = (tmp_path / "images.npz").rglob("images.npz")
    with np.load(file) as archive:
        np.testing.assert_array_equal(archive["images"], original.images)
    # a small set is read into memory (the default threshold)
    small = ImageSetDataset(filepath=path, version=Version(None, None)).load()
    assert type(small.images) is np.ndarray and small.images.flags.writeable
    np.testing.assert_array_equal(small.images, original.images)


def test_a_mapped_image_set_saves_as_a_new_version_and_versions_stay_apart(tmp_path):
    path = str(tmp_path / "images.npz")
    first, second = _large_image_set(300), _large_image_set(120)
    ImageSetDataset(filepath=path, version=Version(None, "2026-01-01T00.00.00.000Z")).save(
        first)
    mapped = ImageSetDataset(filepath=path, version=Version(None, None),
                             in_memory_below=0).load()
    ImageSetDataset(filepath=path, version=Version(None, "2026-01-02T00.00.00.000Z")).save(
        ImageSet(mapped.images[:120], second.labels, mapped.class_names, mapped.source))
    latest = ImageSetDataset(filepath=path, version=Version(None, None),
                             in_memory_below=0).load()
    np.testing.assert_array_equal(latest.images, first.images[:120])
    older = ImageSetDataset(filepath=path, version=Version("2026-01-01T00.00.00.000Z", None),
                            in_memory_below=0).load()
    np.testing.assert_array_equal(older.images, first.images)


def test_fingerprint_in_chunks_is_the_digest_of_the_whole_array(tmp_path):
    data = _large_image_set()
    digest = hashlib.sha256(str(data.images.shape).encode() + data.images.tobytes()
                            + data.labels.astype(np.int64).tobytes() + b"a\x1fb\x1fc")
    assert data.fingerprint() == digest.hexdigest()[:16]


def test_an_image_set_save_that_dies_mid_pixels_leaves_the_previous_version(
        tmp_path, monkeypatch):
    path = str(tmp_path / "images.npz")
    first = _large_image_set()
    ImageSetDataset(filepath=path, version=Version(None, "2026-01-01T00.00.00.000Z")).save(
        first)
    def dying_chunks(pixels, *args):
        yield np.ascontiguousarray(pixels[:10])
        raise OSError("killed while writing pixels")

    monkeypatch.setattr(arrays, "iter_chunks", dying_chunks)
    failing = ImageSetDataset(filepath=path, version=Version(None, "2026-01-02T00.00.00.000Z"))
    with pytest.raises(DatasetError, match="killed while writing"):
        failing.save(_large_image_set(120))
    monkeypatch.undo()
    assert list((tmp_path / "images.npz").rglob("*.tmp-*")) == []
    assert not (tmp_path / "images.npz" / "2026-01-02T00.00.00.000Z").joinpath(
        "images.npz").exists()
    latest = ImageSetDataset(filepath=path, version=Version(None, None),
                             in_memory_below=0).load()
    np.testing.assert_array_equal(latest.images, first.images)


@pytest.mark.parametrize("writer", [np.savez, np.savez_compressed])
def test_image_sets_written_before_the_memory_map_still_load(tmp_path, writer):
    """Versions written with ``np.savez`` (no stored fingerprint) load with the same
    fingerprint; an uncompressed one memory-mapped, a compressed one into memory."""
    original = _large_image_set()
    arrays = original.to_arrays()
    del arrays["fingerprint"]
    writer(tmp_path / "images.npz", **arrays)
    loaded = ImageSetDataset(filepath=str(tmp_path / "images.npz"), in_memory_below=0).load()
    assert isinstance(loaded.images, np.memmap) == (writer is np.savez)
    np.testing.assert_array_equal(loaded.images, original.images)
    assert loaded.fingerprint() == original.fingerprint()


def test_a_file_that_is_not_an_image_set_is_refused_in_one_sentence(tmp_path):
    (tmp_path / "images.npz").write_bytes(b"PK not really a zip")
    with pytest.raises(DatasetError, match="is not an image set .npz .*pipelines=ingest"):
        ImageSetDataset(filepath=str(tmp_path / "images.npz")).load()
