import json

import mlflow
import numpy as np
import pandas as pd
import pytest
from kedro.io.core import DatasetError, Version

from model_lifecycle.data.imageset import ImageSet
from model_lifecycle.io import ImageSetDataset, JsonDataset, NpzDataset, TableDataset


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
