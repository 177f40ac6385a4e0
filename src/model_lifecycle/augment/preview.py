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
    rows, cols = len(originals), len(columns)
    fig, axes = plt.subplots(rows, cols, figsize=(1.1 * cols, 1.1 * rows + 0.4),
                             squeeze=False, layout="constrained")
    for c, (title, batch) in enumerate(columns):
        axes[0, c].set_title(title, fontsize=7)
        for r in range(rows):
            image = batch[r].permute(1, 2, 0).numpy()
            axes[r, c].imshow(image[..., 0] if image.shape[-1] == 1 else image,
                              cmap="gray", vmin=0, vmax=1, interpolation="nearest")
            axes[r, c].axis("off")
    return fig
