"""The augmentation preview: one picture, a row per image, the original first."""

from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np
import pytest

from model_lifecycle.augment.config import AugmentParams, PreviewParams, resolve_policy
from model_lifecycle.augment.preview import preview_grid
from model_lifecycle.data.imageset import ImageSet


@pytest.mark.parametrize("channels", [1, 3])
def test_the_preview_tiles_each_original_beside_its_views(channels):
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, (10, channels, 12, 12), dtype=np.uint8)
    data = ImageSet(images=images, labels=np.arange(10) % 2, class_names=("a", "b"),
                    source="test")
    policy = resolve_policy(AugmentParams.model_validate(
        {"supervised": {"random_crop": {"padding": 2}}}))
    preview = PreviewParams(n_images=3, n_views=2)
    figure = preview_grid(data, np.arange(2, 10), policy, preview, seed=1)
    try:
        [axes] = figure.axes
        canvas = axes.images[0].get_array()
        titles = [text.get_text() for text in axes.texts]
    finally:
        plt.close(figure)
    assert titles == ["original", "supervised 1", "supervised 2", "pretrain 1", "pretrain 2"]
    gap = 1  # 12-pixel images: one white pixel between tiles
    assert canvas.shape == (3 * 12 + 2 * gap, 5 * 12 + 4 * gap, 3)
    chosen = np.sort(np.random.default_rng(1).choice(np.arange(2, 10), 3, replace=False))
    for row, index in enumerate(chosen):  # the first column: the originals, in 0-1
        tile = canvas[row * (12 + gap):row * (12 + gap) + 12, :12]
        expected = np.repeat(images[index].transpose(1, 2, 0), 3 // channels, axis=2) / 255
        np.testing.assert_allclose(tile, expected, atol=1e-6)
    assert (canvas[12, :] == 1).all()  # the white line between the first two rows
    views = canvas[:12, 12 + gap:]
    assert not np.allclose(views[:, :12], canvas[:12, :12])  # a view is not its original
