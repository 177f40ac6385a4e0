"""Attribution maps for image classifiers, their faithfulness and their drift.

The maps come from Captum:

- integrated gradients (Sundararajan, Taly & Yan, "Axiomatic Attribution for Deep
  Networks", ICML 2017), from the reference image (below);
- saliency, the gradient's magnitude (Simonyan, Vedaldi & Zisserman, "Deep Inside
  Convolutional Networks", ICLR workshop 2014);
- Grad-CAM on the last encoder stage (Selvaraju et al., "Grad-CAM: Visual Explanations
  from Deep Networks via Gradient-based Localization", ICCV 2017);
- occlusion by a sliding square of the reference image (Zeiler & Fergus, "Visualizing
  and Understanding Convolutional Networks", ECCV 2014): forward passes only, so the one
  method that runs on INT8 models, which have no autograd.

One *reference* stands for "pixel removed" everywhere: IG's baseline, what occlusion
fills in, what deletion puts in place of a pixel and where insertion starts. ``blur``
(the default: the image blurred as RISE blurs its insertion start) or ``black``.
Scattered black pixels are far outside the data a model saw, so a random deletion order
to black destroys a prediction almost as fast as any attribution order and the metric
measures that artefact (the motivation of ROAD, Rong et al., ICML 2022); and an IG map
explains the difference from its own baseline (completeness), so deleting to that same
reference is what it ranks pixels for.

Captum has no faithfulness metric of this kind, so :func:`deletion_insertion` is
hand-written: the deletion and insertion curves of RISE (Petsiuk, Das & Saenko, "RISE:
Randomized Input Sampling for Explanation of Black-box Models", BMVC 2018), with a
random pixel order as the paired baseline. :func:`attribution_drift` compares the maps
of two models (say, float and INT8) on the same images.
"""

from __future__ import annotations

import contextlib
import itertools
from collections.abc import Iterator, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from captum.attr import (
    IntegratedGradients,
    LayerAttribution,
    LayerGradCam,
    Occlusion,
    Saliency,
)
from matplotlib import colormaps
from matplotlib.figure import Figure
from scipy.stats import rankdata
from torch import nn

from model_lifecycle.errors import LifecycleError
from model_lifecycle.mosaic import tile

METHODS = ("integrated_gradients", "saliency", "grad_cam", "occlusion")
GRADIENT_FREE = ("occlusion",)

# Pixels (images × height × width) per forward pass of the batched methods: bounds memory
# on large images while keeping small ones in few, large batches.
_PIXEL_BUDGET = 2**19
# RISE's blur for the insertion start (its code: kernel 11, sigma 5).
_BLUR_SIZE, _BLUR_SIGMA = 11, 5.0


def is_int8(model: nn.Module) -> bool:
    """``compression.quantize`` marks its INT8 models with a ``quantization`` attribute."""
    return hasattr(model, "quantization")


def methods_for(model: nn.Module) -> tuple[str, ...]:
    """The methods that can run on ``model``: occlusion alone on an INT8 model (no
    autograd); Grad-CAM only where there is an ``encoder.stages`` to hook."""
    if is_int8(model):
        return GRADIENT_FREE
    return tuple(m for m in METHODS if m != "grad_cam" or _has_stages(model))


def attribute(model: nn.Module, x: torch.Tensor, target: torch.Tensor, method: str, *,
              ig_steps: int = 32, occlusion_window: int = 4, occlusion_stride: int = 2,
              reference: str = "blur") -> torch.Tensor:
    """B×H×W float32 maps (CPU) of ``method`` for images ``x`` (B×C×H×W in [0, 1]) and
    classes ``target`` (B): higher means more evidence for the target class.
    ``reference`` (``blur`` or ``black``): IG's baseline and occlusion's fill.

    Runs ``model`` in eval mode and restores its mode afterwards.
    """
    _check_method(model, method)
    if ig_steps < 1:
        raise LifecycleError(f"ig_steps must be ≥ 1, got {ig_steps}: fix it.")
    x, target = _inputs(model, x, target)
    base = reference_image(x, reference)
    with _eval_mode(model):
        if method == "occlusion":
            maps = _occlusion(model, x, target, occlusion_window, occlusion_stride, base)
        else:
            # Captum would set requires_grad itself, with a warning each call.
            with torch.enable_grad():
                maps = _GRADIENT_METHODS[method](model, x.requires_grad_(), target, ig_steps,
                                                 base)
    return maps.detach().float().cpu()


def _check_method(model: nn.Module, method: str) -> None:
    if method not in METHODS:
        raise LifecycleError(f"Unknown attribution method '{method}': choose one of "
                             f"{', '.join(METHODS)}.")
    if is_int8(model) and method not in GRADIENT_FREE:
        raise LifecycleError(f"Attribution method '{method}' needs gradients, which an INT8 "
                             f"model lacks: use {', '.join(GRADIENT_FREE)} for it.")
    if method == "grad_cam" and not _has_stages(model):
        raise LifecycleError("Attribution method 'grad_cam' needs a model with "
                             "encoder.stages (a registry Classifier): choose another method.")


def _integrated_gradients(model: nn.Module, x: torch.Tensor, target: torch.Tensor,
                          steps: int, base: torch.Tensor) -> torch.Tensor:
    # A quarter of the budget: the backward pass keeps every activation.
    batch = max(len(x), _PIXEL_BUDGET // 4 // _pixels(x))  # Captum needs ≥ len(x)
    attr = IntegratedGradients(model).attribute(
        x, baselines=base, target=target, n_steps=steps,
        internal_batch_size=batch)
    # Signed sum over channels: positive evidence ranks first, counter-evidence last.
    return attr.sum(1)


def _saliency(model: nn.Module, x: torch.Tensor, target: torch.Tensor,
              _steps: int, _base: torch.Tensor) -> torch.Tensor:
    # Max over channels of |gradient|, as in Simonyan et al.
    return Saliency(model).attribute(x, target=target, abs=True).amax(1)


def _grad_cam(model: nn.Module, x: torch.Tensor, target: torch.Tensor,
              _steps: int, _base: torch.Tensor) -> torch.Tensor:
    cam = LayerGradCam(model, grad_cam_layer(model)).attribute(
        x, target=target, relu_attributions=True)
    return LayerAttribution.interpolate(cam, tuple(x.shape[2:]),
                                        interpolate_mode="bilinear").squeeze(1)


_GRADIENT_METHODS = {"integrated_gradients": _integrated_gradients, "saliency": _saliency,
                     "grad_cam": _grad_cam}


def grad_cam_layer(model: nn.Module) -> nn.Module:
    """The last encoder stage, or, where that stage ends in a global pool (``fast_cnn``
    does), the block before the pool: Grad-CAM needs a spatial feature map."""
    stage = model.encoder.stages[-1]
    pools = (nn.AdaptiveAvgPool2d, nn.AdaptiveMaxPool2d)
    if isinstance(stage, nn.Sequential) and len(stage) > 1 and isinstance(stage[-1], pools):
        return stage[-2]
    return stage


def _occlusion(model: nn.Module, x: torch.Tensor, target: torch.Tensor, window: int,
               stride: int, base: torch.Tensor) -> torch.Tensor:
    if window < 1 or not 1 <= stride <= window:
        raise LifecycleError(f"Occlusion window {window} and stride {stride} must satisfy "
                             "1 ≤ stride ≤ window: fix them.")
    channels, height, width = x.shape[1:]
    # A window larger than the image would be refused by Captum: occlude the whole side.
    shape = (channels, min(window, height), min(window, width))
    per_eval = max(1, _PIXEL_BUDGET // (len(x) * _pixels(x)))
    attr = Occlusion(model).attribute(x, sliding_window_shapes=shape,
                                      strides=(channels, stride, stride), baselines=base,
                                      target=target, perturbations_per_eval=per_eval)
    # Every channel of a pixel is occluded together, so all channels hold the same value.
    return attr.mean(1)


def deletion_insertion(model: nn.Module, x: torch.Tensor, target: torch.Tensor,
                       maps: torch.Tensor, *, steps: int = 16, seed: int = 0,
                       baseline: bool = True, reference: str = "blur"
                       ) -> dict[str, np.ndarray]:
    """Per-image areas under RISE's deletion and insertion curves (shape B each):
    ``deletion``, ``insertion``, and the same for a random pixel order,
    ``deletion_random`` and ``insertion_random``.

    Pixels (all channels together) are ranked by ``maps`` (descending; ties in a random
    order drawn from ``seed``). Deletion replaces the top k pixels by the reference
    image's (``blur``: a blurred copy, Gaussian kernel 11, sigma 5, as RISE blurs; or
    ``black``), insertion reveals them on the reference, for k = 0, n/steps, …, n; each
    curve is the softmax probability of ``target`` against the fraction k/n, integrated
    by the trapezoid rule. Lower deletion and higher insertion mean a more faithful map.
    The random order of image i depends on ``seed`` and i only, so the baselines are the
    same for every method (paired comparisons) and a caller comparing methods on the
    same images may compute them once: ``baseline=False`` leaves them out (half the
    forward passes). Forward passes only: works on INT8 models.
    """
    if steps < 1:
        raise LifecycleError(f"deletion_insertion steps must be ≥ 1, got {steps}: fix it.")
    x, target = _inputs(model, x, target)
    if tuple(maps.shape) != (x.shape[0], *x.shape[2:]):
        raise LifecycleError(f"Attribution maps of shape {tuple(maps.shape)} do not match "
                             f"images of shape {tuple(x.shape)}: expected B×H×W.")
    n = _pixels(x)
    counts = torch.round(torch.linspace(0, n, steps + 1)).long().to(x.device)
    order_rng = np.random.default_rng([seed, 0])  # the baseline's orders
    tie_rng = np.random.default_rng([seed, 1])  # breaks ties in the maps
    flat = maps.detach().reshape(len(maps), -1).float().cpu().numpy()
    orders = np.stack([[_ranking(row, tie_rng)]
                       + ([order_rng.permutation(n)] if baseline else []) for row in flat])
    # Images per group: one forward of group × orders × 2 curves × (steps + 1) images.
    group = max(1, _PIXEL_BUDGET // (n * 2 * orders.shape[1] * len(counts)))
    with _eval_mode(model), torch.no_grad():
        blurred = reference_image(x, reference)
        probs = [_curve_probabilities(model, x[s:s + group], blurred[s:s + group],
                                      target[s:s + group], orders[s:s + group], counts)
                 for s in range(0, len(x), group)]
    # B × order (map[, random]) × curve (deletion, insertion) × step
    auc = np.trapezoid(np.concatenate(probs), counts.cpu().numpy() / n, axis=-1)
    result = {"deletion": auc[:, 0, 0], "insertion": auc[:, 0, 1]}
    if baseline:
        result |= {"deletion_random": auc[:, 1, 0], "insertion_random": auc[:, 1, 1]}
    return result


def _ranking(values: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Pixel indices by decreasing value; equal values in a random order."""
    shuffle = rng.permutation(len(values))
    return shuffle[np.argsort(-values[shuffle], kind="stable")]


def _curve_probabilities(model: nn.Module, images: torch.Tensor, blurred: torch.Tensor,
                         target: torch.Tensor, orders: np.ndarray,
                         counts: torch.Tensor) -> np.ndarray:
    """Probabilities of ``target`` along the deletion and insertion curves of each image
    (G×C×H×W) and pixel order (G×O×n): G × O orders × 2 curves × (steps + 1)."""
    (g, n_orders), (c, h, w), steps = orders.shape[:2], images.shape[1:], len(counts)
    order = torch.as_tensor(orders, device=images.device)
    positions = torch.arange(order.shape[-1], device=images.device).expand_as(order)
    rank = torch.empty_like(order).scatter_(-1, order, positions)
    # Step j takes the pixels ranked below counts[j], all channels: G×O×steps×1×H×W.
    taken = (rank[:, :, None, :] < counts[:, None]).view(g, n_orders, steps, 1, h, w)
    image = images[:, None, None]
    deletion = torch.where(taken, blurred[:, None, None], image)
    insertion = torch.where(taken, image, blurred[:, None, None])
    batch = torch.stack([deletion, insertion], dim=2).reshape(-1, c, h, w)
    logits = torch.cat([model(chunk) for chunk in batch.split(_PIXEL_BUDGET // (h * w) or 1)])
    labels = target.repeat_interleave(n_orders * 2 * steps)[:, None]
    probs = F.softmax(logits.float(), dim=1).gather(1, labels)
    return probs.reshape(g, n_orders, 2, steps).cpu().numpy()


REFERENCES = ("blur", "black")


def reference_image(x: torch.Tensor, kind: str) -> torch.Tensor:
    """What stands for "pixel removed" (see the module docstring): ``x`` blurred, or
    black."""
    if kind not in REFERENCES:
        raise LifecycleError(f"Unknown attribution reference '{kind}': choose one of "
                             f"{', '.join(REFERENCES)}.")
    with torch.no_grad():
        return _gaussian_blur(x.detach()) if kind == "blur" else torch.zeros_like(x)


def _gaussian_blur(x: torch.Tensor) -> torch.Tensor:
    """Separable Gaussian blur, edges replicated so that any image size works."""
    offsets = torch.arange(_BLUR_SIZE, dtype=x.dtype, device=x.device) - _BLUR_SIZE // 2
    kernel = torch.exp(-(offsets**2) / (2 * _BLUR_SIGMA**2))
    kernel = kernel / kernel.sum()
    channels, pad = x.shape[1], _BLUR_SIZE // 2
    rows = kernel.view(1, 1, 1, -1).repeat(channels, 1, 1, 1)
    out = F.conv2d(F.pad(x, (pad, pad, 0, 0), mode="replicate"), rows, groups=channels)
    cols = kernel.view(1, 1, -1, 1).repeat(channels, 1, 1, 1)
    return F.conv2d(F.pad(out, (0, 0, pad, pad), mode="replicate"), cols, groups=channels)


def attribution_drift(maps_a: torch.Tensor, maps_b: torch.Tensor, *,
                      top_fraction: float = 0.1) -> dict[str, float]:
    """How far two sets of maps of the same images differ, averaged over images:
    ``spearman``, the rank correlation of each pair of flattened maps, and
    ``top_overlap``, the share of the top ``top_fraction`` pixels of A also in B's top.

    An image where either map is constant has no rank correlation: it is left out of
    the spearman average (NaN if that leaves none).
    """
    if tuple(maps_a.shape) != tuple(maps_b.shape):
        raise LifecycleError(f"Attribution maps of shapes {tuple(maps_a.shape)} and "
                             f"{tuple(maps_b.shape)} cannot be compared: they must match.")
    if not 0 < top_fraction <= 1:
        raise LifecycleError(f"top_fraction {top_fraction} must lie in (0, 1]: fix it.")
    a = maps_a.detach().reshape(len(maps_a), -1).double().cpu().numpy()
    b = maps_b.detach().reshape(len(maps_b), -1).double().cpu().numpy()
    return {"spearman": _mean_spearman(a, b), "top_overlap": _top_overlap(a, b, top_fraction)}


def _mean_spearman(a: np.ndarray, b: np.ndarray) -> float:
    # Spearman = Pearson correlation of the ranks (ties averaged), as scipy.stats.spearmanr,
    # computed for all rows at once.
    ra, rb = rankdata(a, axis=1), rankdata(b, axis=1)
    ra, rb = ra - ra.mean(1, keepdims=True), rb - rb.mean(1, keepdims=True)
    norms = np.sqrt((ra**2).sum(1) * (rb**2).sum(1))
    defined = norms > 0
    if not defined.any():
        return float("nan")
    return float(np.mean((ra * rb).sum(1)[defined] / norms[defined]))


def _top_overlap(a: np.ndarray, b: np.ndarray, fraction: float) -> float:
    k = max(1, int(round(fraction * a.shape[1])))
    top_a = np.argsort(-a, axis=1, kind="stable")[:, :k]
    top_b = np.argsort(-b, axis=1, kind="stable")[:, :k]
    shared = [len(np.intersect1d(ta, tb)) for ta, tb in zip(top_a, top_b, strict=True)]
    return float(np.mean(shared) / k)


def explanation_figure(images: torch.Tensor, maps: dict[str, torch.Tensor],
                       predicted: Sequence[int] | torch.Tensor,
                       truth: Sequence[int] | torch.Tensor, class_names: Sequence[str], *,
                       title: str) -> Figure:
    """One row per image: the image (labelled with its predicted and true classes), then
    each method's map, normalised per image, in 'jet' at half opacity over the image in
    grayscale.

    Drawn as one mosaic in one axes rather than an axes per panel: a variant's figure
    holds 20 rows of 5 panels, and matplotlib laid out and rendered those 100 axes in
    1.3–2.0 s against 0.3 s for one image of the same pixels."""
    if images.dim() != 4 or images.shape[1] not in (1, 3):
        raise LifecycleError(f"Images of shape {tuple(images.shape)} cannot be drawn: "
                             "expected B×C×H×W with 1 or 3 channels.")
    rows, cols = len(images), 1 + len(maps)
    height, width = images.shape[-2:]
    gap = max(1, round(0.12 * max(height, width)))
    pictures = images.detach().float().cpu().clamp(0, 1).permute(0, 2, 3, 1).numpy()
    jet = colormaps["jet"]
    panels = []
    for r, picture in enumerate(pictures):
        gray = np.repeat(picture.mean(-1, keepdims=True), 3, axis=-1)
        panels.append([np.repeat(picture, 3, axis=-1) if picture.shape[-1] == 1 else picture])
        panels[-1] += [0.5 * jet(_normalised(batch[r]))[..., :3] + 0.5 * gray
                       for batch in maps.values()]
    mosaic, pitch_y, pitch_x = tile(panels, gap)
    # inches: 1.6 high a panel, as wide as the images' shape makes it (a square box left
    # non-square images half blank), 1.2 on the left for the class labels, 0.9 on top for
    # the title and the column names, 0.1 below
    panel_w = min(4.0, max(0.6, 1.6 * pitch_x / pitch_y))
    fig_w, fig_h = panel_w * cols + 1.2, 1.6 * rows + 1.0
    fig = Figure(figsize=(fig_w, fig_h))
    ax = fig.add_axes((1.2 / fig_w, 0.1 / fig_h, panel_w * cols / fig_w, 1.6 * rows / fig_h))
    ax.imshow(mosaic, interpolation="nearest", vmin=0, vmax=1)
    ax.set_axis_off()
    for c, name in enumerate(["image", *maps]):
        ax.text(c * pitch_x + width / 2, -gap, name, ha="center", va="bottom", fontsize=8)
    for r in range(rows):
        ax.text(-gap, r * pitch_y + height / 2,
                f"pred {_name(class_names, predicted[r])}\ntrue {_name(class_names, truth[r])}",
                ha="right", va="center", fontsize=7)
    fig.suptitle(title, fontsize=9, y=1 - 0.15 / fig_h, va="top")
    return fig


def _name(class_names: Sequence[str], index: int | torch.Tensor) -> str:
    i = int(index)
    return class_names[i] if 0 <= i < len(class_names) else str(i)


def _normalised(heatmap: torch.Tensor) -> np.ndarray:
    values = heatmap.detach().float().cpu().numpy()
    low, high = values.min(), values.max()
    return (values - low) / (high - low) if high > low else np.zeros_like(values)


def _has_stages(model: nn.Module) -> bool:
    stages = getattr(getattr(model, "encoder", None), "stages", None)
    return isinstance(stages, nn.ModuleList) and len(stages) > 0


def _pixels(x: torch.Tensor) -> int:
    return int(x.shape[-2] * x.shape[-1])


def _device(model: nn.Module) -> torch.device:
    for tensor in itertools.chain(model.parameters(), model.buffers()):
        return tensor.device
    return torch.device("cpu")


def _inputs(model: nn.Module, x: torch.Tensor,
            target: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    if x.dim() != 4:
        raise LifecycleError(f"Images of shape {tuple(x.shape)} cannot be explained: "
                             "expected B×C×H×W.")
    device = _device(model)
    target = torch.as_tensor(target, dtype=torch.long).reshape(-1).to(device)
    if len(target) != len(x):
        raise LifecycleError(f"{len(target)} targets for {len(x)} images: give one class "
                             "per image.")
    return x.detach().float().to(device), target


@contextlib.contextmanager
def _eval_mode(model: nn.Module) -> Iterator[None]:
    """Eval mode (batch-norm statistics frozen, dropout off), then the caller's mode back."""
    training = model.training
    model.eval()
    try:
        yield
    finally:
        model.train(training)
