"""A picture of the policy: originals beside their supervised and pretraining views."""

from __future__ import annotations

from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import torch  # noqa: E402

from model_lifecycle.augment.augmenter import BatchAugmenter  # noqa: E402
from model_lifecycle.augment.config import PreviewParams, policy_from_artifact  # noqa: E402
from model_lifecycle.data.imageset import ImageSet  # noqa: E402
from model_lifecycle.errors import LifecycleError  # noqa: E402


def preview_grid(data: ImageSet, indices: np.ndarray, policy: dict[str, Any],
                 preview: PreviewParams, *, seed: int) -> plt.Figure:
    """One row per image: the original, ``n_views`` supervised views, ``n_views``
    pretraining views."""
    if len(indices) == 0:
        raise LifecycleError(
            f"augment.preview.split '{preview.split}' holds no images: choose another "
            "split (train_labeled, val or test)."
        )
    rng = np.random.default_rng(seed)
    chosen = rng.choice(indices, size=min(preview.n_images, len(indices)), replace=False)
    originals = torch.from_numpy(data.images[np.sort(chosen)])
    generator = torch.Generator().manual_seed(seed)
    columns = [("original", originals.float() / 255)]
    for view in ("supervised", "pretrain"):
        augment = BatchAugmenter(policy_from_artifact(policy, view))
        columns += [(f"{view} {k + 1}", augment(originals, generator))
                    for k in range(preview.n_views)]
    return _mosaic_figure(columns)


GAP_SHARE = 8  # one white pixel between tiles per this many pixels of image


def _mosaic_figure(columns: list[tuple[str, torch.Tensor]]) -> plt.Figure:
    """The columns' images tiled into one picture, drawn in one axes with the column
    titles above it: a grid of one axes per image costs matplotlib about 1.5 s per
    preview (an axes' ticks and fonts each), paid in every ``augment`` run."""
    batches = [batch.clamp(0, 1).expand(-1, 3, -1, -1) for _, batch in columns]
    rows, cols = len(batches[0]), len(batches)
    height = max(b.shape[2] for b in batches)
    width = max(b.shape[3] for b in batches)
    gap = max(1, height // GAP_SHARE)
    canvas = np.ones((rows * (height + gap) - gap, cols * (width + gap) - gap, 3),
                     dtype=np.float32)
    for c, batch in enumerate(batches):
        left = c * (width + gap)
        for r in range(rows):
            top = r * (height + gap)
            image = batch[r].permute(1, 2, 0).numpy()
            canvas[top:top + image.shape[0], left:left + image.shape[1]] = image
    fig = plt.figure(figsize=(1.1 * cols, 1.1 * rows + 0.4))
    axes = fig.add_axes((0.0, 0.0, 1.0, 1.1 * rows / (1.1 * rows + 0.4)))
    axes.imshow(canvas, interpolation="nearest")
    axes.set_axis_off()
    for c, (title, _) in enumerate(columns):
        axes.text(c * (width + gap) + width / 2, -gap, title, fontsize=7,
                  ha="center", va="bottom")
    return fig
