import gc
import os
import pickle
import random
import tarfile
from functools import partial

import numpy as np
import pytest

from model_lifecycle.data import holdout
from model_lifecycle.data.cifar10 import load_cifar10
from model_lifecycle.data.image_folder import load_image_folder
from model_lifecycle.data.imageset import ImageSet
from model_lifecycle.data.store import (
    MappedPixels,
    PixelSink,
    gather_rows,
    iter_chunks,
    mapped_file,
    take_rows,
)


def _rows(n, seed=0, shape=(3, 4, 5)):
    return np.random.default_rng(seed).integers(0, 256, (n, *shape), dtype=np.uint8)


@pytest.mark.parametrize("in_memory_below", [0, 2**30])
def test_sink_returns_the_appended_rows_in_order(tmp_path, in_memory_below):
    rows = _rows(25)
    with PixelSink(30, (3, 4, 5), directory=tmp_path, in_memory_below=in_memory_below) as sink:
        for start in range(0, 25, 7):
            sink.append(rows[start:start + 7])
        pixels = sink.finish()
    np.testing.assert_array_equal(pixels, rows)
    assert isinstance(pixels, MappedPixels) == (in_memory_below == 0)


def test_a_spilled_sink_is_a_read_only_map_whose_file_goes_with_it(tmp_path):
    with PixelSink(4, (3, 4, 5), directory=tmp_path, in_memory_below=0) as sink:
        sink.append(_rows(4))
        pixels = sink.finish()
    assert isinstance(pixels, np.memmap) and pixels.mode == "r"
    with pytest.raises(ValueError, match="read-only"):
        pixels[0, 0, 0, 0] = 1
    assert len(list(tmp_path.iterdir())) == 1
    del pixels
    gc.collect()
    assert list(tmp_path.iterdir()) == []


def test_an_error_inside_the_sink_removes_its_file(tmp_path):
    with pytest.raises(RuntimeError), PixelSink(4, (3, 4, 5), directory=tmp_path,
                                                in_memory_below=0) as sink:
        sink.append(_rows(2))
        raise RuntimeError("decoding failed")
    assert list(tmp_path.iterdir()) == []


def test_the_sink_refuses_rows_of_another_shape_or_beyond_its_capacity(tmp_path):
    with PixelSink(2, (3, 4, 5), in_memory_below=0, directory=tmp_path) as sink:
        with pytest.raises(ValueError, match="rows must be uint8"):
            sink.append(_rows(1, shape=(1, 4, 5)))
        with pytest.raises(ValueError, match="exceed the capacity"):
            sink.append(_rows(3))
        sink.discard()


def test_chunks_of_a_mapped_view_are_read_from_its_file(tmp_path):
    rows = _rows(50)
    with PixelSink(50, (3, 4, 5), directory=tmp_path, in_memory_below=0) as sink:
        sink.append(rows)
        pixels = sink.finish()
    view = pixels[7:43]
    assert mapped_file(view) == (mapped_file(pixels)[0], mapped_file(pixels)[1] + 7 * 60)
    chunks = list(iter_chunks(view, chunk_bytes=5 * 60))
    assert [len(c) for c in chunks] == [5] * 7 + [1]
    np.testing.assert_array_equal(np.concatenate(chunks), rows[7:43])
    assert mapped_file(pixels[:, 0]) is None  # not contiguous: indexed through the map
    np.testing.assert_array_equal(np.concatenate(list(iter_chunks(pixels[:, 0], 60))),
                                  rows[:, 0])


def test_gather_keeps_the_order_asked_for(tmp_path):
    rows = _rows(40)
    with PixelSink(40, (3, 4, 5), directory=tmp_path, in_memory_below=0) as sink:
        sink.append(rows)
        pixels = sink.finish()
    order = np.array([31, 2, 17, 2, 39, 0])
    np.testing.assert_array_equal(gather_rows(pixels, order), rows[order])
    np.testing.assert_array_equal(gather_rows(rows, order), rows[order])


def test_mapped_pixels_pickle_as_a_reference_to_their_file(tmp_path):
    rows = _rows(200)
    with PixelSink(200, (3, 4, 5), directory=tmp_path, in_memory_below=0) as sink:
        sink.append(rows)
        pixels = sink.finish()
    raw = pickle.dumps(pixels[50:150])
    assert len(raw) < 1000 < rows[50:150].nbytes
    again = pickle.loads(raw)
    assert isinstance(again, MappedPixels)
    np.testing.assert_array_equal(again, rows[50:150])
    np.testing.assert_array_equal(pickle.loads(pickle.dumps(pixels[:, 1])), rows[:, 1])


def test_an_image_folder_spilled_to_disk_equals_the_one_in_memory(image_tree):
    (image_tree / "dog" / "broken.png").write_bytes(b"not a png")
    kwargs = {"on_bad_image": "skip", "num_workers": 1}
    in_memory = load_image_folder(image_tree, (8, 8), **kwargs)
    spilled = load_image_folder(image_tree, (8, 8), in_memory_below=0, **kwargs)
    assert isinstance(spilled.images, MappedPixels)
    assert not isinstance(in_memory.images, np.memmap)
    np.testing.assert_array_equal(spilled.images, in_memory.images)
    np.testing.assert_array_equal(spilled.labels, in_memory.labels)
    assert spilled.fingerprint() == in_memory.fingerprint()
    assert len(spilled) == 30 and len(spilled.skipped) == 1


def test_an_archive_in_any_member_order_gives_the_canonical_order(cifar_dir, tmp_path):
    members = sorted(os.listdir(cifar_dir))
    random.Random(3).shuffle(members)
    members.sort(key=lambda name: name != "test_batch")  # test_batch first: out of order
    archive = tmp_path / "shuffled.tar.gz"
    with tarfile.open(archive, "w:gz") as tar:
        for name in members:
            tar.add(cifar_dir / name, arcname=f"cifar-10-batches-py/{name}")
    from_dir = load_cifar10(cifar_dir, (32, 32))
    for in_memory_below in (0, 2**30):
        from_tar = load_cifar10(archive, (32, 32), in_memory_below=in_memory_below)
        np.testing.assert_array_equal(from_tar.images, from_dir.images)
        np.testing.assert_array_equal(from_tar.labels, from_dir.labels)
        np.testing.assert_array_equal(from_tar.source_test, from_dir.source_test)
        assert from_tar.fingerprint() == from_dir.fingerprint()
    spilled = load_cifar10(cifar_dir, (16, 16), channels=1, in_memory_below=0)
    assert isinstance(spilled.images, MappedPixels)
    np.testing.assert_array_equal(spilled.images,
                                  load_cifar10(cifar_dir, (16, 16), channels=1).images)


def test_a_subset_of_a_mapped_set_is_mapped_and_holds_the_rows_asked_for(tmp_path,
                                                                          monkeypatch):
    rows = _rows(60)
    with PixelSink(60, (3, 4, 5), directory=tmp_path, in_memory_below=0) as sink:
        sink.append(rows)
        pixels = sink.finish()
    order = np.array([59, 3, 3, 17, 0, 42])
    taken = take_rows(pixels, order, in_memory_below=0)
    assert isinstance(taken, MappedPixels)
    np.testing.assert_array_equal(taken, rows[order])
    in_memory = take_rows(pixels, order)
    assert not isinstance(in_memory, np.memmap)
    np.testing.assert_array_equal(in_memory, rows[order])
    # class hold-out (ingest's fewshot.novel_classes) copies through take_rows: a set
    # past the threshold (here: any) stays mapped
    monkeypatch.setattr(holdout, "take_rows", partial(take_rows, in_memory_below=0))
    data = ImageSet(pixels, np.arange(60) % 3, ("a", "b", "c"), "cifar10")
    base, novel = holdout.hold_out_classes(data, ["b"])
    assert isinstance(base.images, MappedPixels) and isinstance(novel.images, MappedPixels)
    np.testing.assert_array_equal(base.images, rows[np.arange(60) % 3 != 1])
    np.testing.assert_array_equal(novel.images, rows[1::3])
