import os
import pickle
import tarfile

import numpy as np
import pytest

from model_lifecycle.data.cifar10 import load_cifar10
from model_lifecycle.errors import LifecycleError
from tests.conftest import write_cifar_batch


def test_reads_batches_in_cifar_layout(cifar_dir):
    data = load_cifar10(cifar_dir, (32, 32))
    assert data.images.shape == (100, 3, 32, 32)
    assert data.class_names[0] == "airplane"
    assert data.source_test.sum() == 20
    raw = pickle.loads((cifar_dir / "data_batch_1").read_bytes())[b"data"]
    # row-major 3072 = 3 planes of 32×32 (R, G, B)
    np.testing.assert_array_equal(data.images[0], raw[0].reshape(3, 32, 32))


def test_tar_gz_gives_the_same_images(cifar_dir, tmp_path):
    archive = tmp_path / "cifar-10-python.tar.gz"
    with tarfile.open(archive, "w:gz") as tar:
        tar.add(cifar_dir, arcname="cifar-10-batches-py")
    from_dir = load_cifar10(cifar_dir, (32, 32))
    from_tar = load_cifar10(archive, (32, 32))
    np.testing.assert_array_equal(from_dir.images, from_tar.images)
    np.testing.assert_array_equal(from_dir.labels, from_tar.labels)


def test_resize_and_grayscale(cifar_dir):
    data = load_cifar10(cifar_dir, (16, 16), channels=1)
    assert data.images.shape == (100, 1, 16, 16)


def test_wrong_keys(cifar_dir):
    (cifar_dir / "data_batch_2").write_bytes(pickle.dumps({b"pixels": b""}, protocol=2))
    with pytest.raises(LifecycleError, match=r"data_batch_2 has keys \['pixels'\]"):
        load_cifar10(cifar_dir, (32, 32))


def test_wrong_shape(cifar_dir):
    write_cifar_batch(cifar_dir / "data_batch_1", 4, 0,
                      {b"data": np.zeros((4, 1000), dtype=np.uint8)})
    shape = r"data_batch_1 'data' is uint8 with shape \(4, 1000\)"
    with pytest.raises(LifecycleError, match=shape):
        load_cifar10(cifar_dir, (32, 32))


def test_label_count_mismatch(cifar_dir):
    write_cifar_batch(cifar_dir / "data_batch_1", 4, 0, {b"labels": [1, 2]})
    with pytest.raises(LifecycleError, match=r"has 4 images but 'labels' has shape \(2,\)"):
        load_cifar10(cifar_dir, (32, 32))


def test_not_a_pickle(cifar_dir):
    (cifar_dir / "test_batch").write_bytes(b"definitely not a pickle")
    with pytest.raises(LifecycleError, match=r"test_batch is not a CIFAR-10 python batch"):
        load_cifar10(cifar_dir, (32, 32))


class _Exploit:
    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def test_a_pickle_that_would_run_code_is_refused(cifar_dir, tmp_path):
    marker = tmp_path / "pwned"
    (cifar_dir / "data_batch_1").write_bytes(pickle.dumps({b"data": _Exploit(marker)}))
    with pytest.raises(LifecycleError, match=r"refusing to load"):
        load_cifar10(cifar_dir, (32, 32))
    assert not marker.exists()


def test_missing_folder_and_folder_without_batches(tmp_path):
    with pytest.raises(LifecycleError, match=r"does not exist"):
        load_cifar10(tmp_path / "nope", (32, 32))
    with pytest.raises(LifecycleError, match=r"No CIFAR-10 training batch"):
        load_cifar10(tmp_path, (32, 32))


def test_errors_name_the_file_where_it_is(cifar_dir, tmp_path):
    # the folder that holds cifar-10-batches-py/, and the archive: the message names the
    # batch where it really is
    write_cifar_batch(cifar_dir / "data_batch_1", 4, 0, {b"labels": [1, 2]})
    with pytest.raises(LifecycleError, match=rf"^{cifar_dir / 'data_batch_1'} has 4 images"):
        load_cifar10(cifar_dir.parent, (32, 32))
    archive = tmp_path / "cifar-10-python.tar.gz"
    with tarfile.open(archive, "w:gz") as tar:
        tar.add(cifar_dir, arcname="cifar-10-batches-py")
    with pytest.raises(LifecycleError, match=rf"^{archive}:cifar-10-batches-py/data_batch_1 "):
        load_cifar10(archive, (32, 32))
