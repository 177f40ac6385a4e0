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
from model_lifecycle.mosaic import tile  # noqa: E402


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
    """The columns' images tiled into one picture (:func:`~model_lifecycle.mosaic.tile`),
    drawn in one axes with the column titles above it."""
    batches = [batch.clamp(0, 1).expand(-1, 3, -1, -1).permute(0, 2, 3, 1).numpy()
               for _, batch in columns]
    rows = [[batch[r] for batch in batches] for r in range(len(batches[0]))]
    width = max(batch.shape[2] for batch in batches)
    gap = max(1, max(batch.shape[1] for batch in batches) // GAP_SHARE)
    canvas, _, pitch_x = tile(rows, gap)
    fig = plt.figure(figsize=(1.1 * len(columns), 1.1 * len(rows) + 0.4))
    axes = fig.add_axes((0.0, 0.0, 1.0, 1.1 * len(rows) / (1.1 * len(rows) + 0.4)))
    axes.imshow(canvas, interpolation="nearest")
    axes.set_axis_off()
    for c, (title, _) in enumerate(columns):
        axes.text(c * pitch_x + width / 2, -gap, title, fontsize=7,
                  ha="center", va="bottom")
    return fig
