import numpy as np

from model_lifecycle.data.digits import load_digits


def test_embedded_digits_are_real_images_at_any_size():
    data = load_digits((16, 16))
    assert data.images.shape == (1797, 1, 16, 16)
    assert data.class_names == tuple(str(d) for d in range(10))
    assert data.images.max() == 255 and data.images.min() == 0
    assert np.bincount(data.labels).min() > 150
    native = load_digits((8, 8), channels=3)
    assert native.images.shape == (1797, 3, 8, 8)
    assert data.fingerprint() != native.fingerprint()
