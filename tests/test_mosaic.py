"""Panels tiled into one picture (the augmentation preview and explanation figures)."""

from __future__ import annotations

import numpy as np

from model_lifecycle.mosaic import tile


def test_panels_sit_at_their_cells_on_white_and_smaller_ones_at_the_top_left():
    big = np.full((4, 5, 3), 0.2)
    small = np.full((2, 3, 3), 0.7)
    picture, pitch_y, pitch_x = tile([[big, small], [small]], gap=2)
    assert (pitch_y, pitch_x) == (6, 7)
    assert picture.shape == (2 * 6 - 2, 2 * 7 - 2, 3)
    np.testing.assert_allclose(picture[0:4, 0:5], 0.2)
    np.testing.assert_allclose(picture[0:2, 7:10], 0.7)
    np.testing.assert_allclose(picture[6:8, 0:3], 0.7)
    painted = np.zeros(picture.shape[:2], dtype=bool)
    for top, left, (h, w) in ((0, 0, (4, 5)), (0, 7, (2, 3)), (6, 0, (2, 3))):
        painted[top:top + h, left:left + w] = True
    assert (picture[~painted] == 1).all()  # gaps, empty cells and unused corners: white
