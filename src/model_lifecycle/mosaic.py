"""Pictures of many small images, tiled into one array drawn in one matplotlib axes.

A grid of one axes per image costs matplotlib a second or two to lay out and render
(each axes has its own ticks and fonts) against a fraction of that for one image of
the same pixels; the augmentation preview and the explanation figures are drawn so.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np


def tile(rows: Sequence[Sequence[np.ndarray]], gap: int) -> tuple[np.ndarray, int, int]:
    """``rows`` of H×W×3 panels (float, 0–1; each at most as large as the largest) on
    white, ``gap`` pixels apart, each at the top left of its cell. Returns the picture and
    the cell pitch (``pitch_y``, ``pitch_x``: a cell's size plus the gap), which places
    labels: cell ``(r, c)`` starts at ``(r * pitch_y, c * pitch_x)``."""
    height = max(panel.shape[0] for row in rows for panel in row)
    width = max(panel.shape[1] for row in rows for panel in row)
    pitch_y, pitch_x = height + gap, width + gap
    cols = max(len(row) for row in rows)
    picture = np.ones((len(rows) * pitch_y - gap, cols * pitch_x - gap, 3), dtype=np.float32)
    for r, row in enumerate(rows):
        for c, panel in enumerate(row):
            top, left = r * pitch_y, c * pitch_x
            picture[top:top + panel.shape[0], left:left + panel.shape[1]] = panel
    return picture, pitch_y, pitch_x
