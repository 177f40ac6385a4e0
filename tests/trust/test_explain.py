"""Attribution maps, their faithfulness (deletion/insertion) and drift."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from matplotlib.figure import Figure
from scipy.stats import spearmanr
from torch import nn

from model_lifecycle.errors import LifecycleError
from model_lifecycle.models.registry import build_model
from model_lifecycle.trust.explain import (
    GRADIENT_FREE,
    METHODS,
    attribute,
    attribution_drift,
    deletion_insertion,
    explanation_figure,
    grad_cam_layer,
    methods_for,
    reference_image,
)

PIXEL = (5, 9)  # the one pixel the hand-built model looks at (row, column)


class _MaskStage(nn.Module):
    """Channel mean of the image, zero everywhere except at one pixel."""

    def __init__(self, height: int, width: int) -> None:
        super().__init__()
        mask = torch.zeros(1, 1, height, width)
        mask[..., PIXEL[0], PIXEL[1]] = 1.0
        self.register_buffer("mask", mask)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.mean(1, keepdim=True) * self.mask


class _OnePixel(nn.Module):
    """A Classifier-like model (``encoder.stages``, ``head``) whose evidence is one pixel:
    logit(1) − logit(0) = 16·(v − 0.5), v = that pixel's channel mean."""

    def __init__(self, height: int = 12, width: int = 16) -> None:
        super().__init__()
        self.encoder = nn.Module()
        self.encoder.stages = nn.ModuleList([_MaskStage(height, width)])
        self.head = nn.Linear(1, 2)
        with torch.no_grad():
            self.head.weight.copy_(torch.tensor([[-8.0], [8.0]]))
            self.head.bias.copy_(torch.tensor([4.0, -4.0]))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        features = self.encoder.stages[0](x).sum((1, 2, 3))  # the pooling: a sum
        return self.head(features[:, None])


def _one_pixel_images(batch: int = 6, channels: int = 3) -> torch.Tensor:
    """Dim random backgrounds with the model's pixel bright: class 1 with p ≈ 1."""
    x = 0.3 * torch.rand(batch, channels, 12, 16, generator=torch.Generator().manual_seed(1))
    x[:, :, PIXEL[0], PIXEL[1]] = 1.0
    return x


def _argmax_pixel(maps: torch.Tensor) -> list[tuple[int, int]]:
    width = maps.shape[-1]
    return [divmod(int(i), width) for i in maps.flatten(1).argmax(1)]


@pytest.mark.parametrize(("channels", "size"), [(1, (16, 16)), (3, (12, 20))])
def test_every_method_gives_a_map_per_image_of_the_input_size(channels, size):
    torch.manual_seed(0)
    model = build_model("small_cnn", 4, channels, width=4)
    x = torch.rand(3, channels, *size)
    target = torch.tensor([0, 1, 3])
    assert methods_for(model) == METHODS
    for method in METHODS:
        maps = attribute(model, x, target, method, ig_steps=4)
        assert maps.shape == (3, *size) and maps.dtype == torch.float32, method
        assert maps.device.type == "cpu" and torch.isfinite(maps).all(), method


def test_grad_cam_hooks_the_block_before_a_global_pool():
    # fast_cnn's last stage ends in AdaptiveMaxPool2d(1): a 1×1 map would say nothing.
    fast = build_model("fast_cnn", 3, 3, width=0.25)
    assert grad_cam_layer(fast) is fast.encoder.stages[-1][-2]
    small = build_model("small_cnn", 3, 3, width=4)
    assert grad_cam_layer(small) is small.encoder.stages[-1]
    maps = attribute(fast, torch.rand(2, 3, 16, 16), torch.tensor([0, 1]), "grad_cam")
    assert maps.shape == (2, 16, 16)


@pytest.mark.parametrize("method", ["integrated_gradients", "saliency", "grad_cam"])
def test_gradient_maps_point_at_the_one_pixel_the_model_uses(method):
    x = _one_pixel_images()
    maps = attribute(_OnePixel(), x, torch.ones(len(x), dtype=torch.long), method, ig_steps=8)
    assert _argmax_pixel(maps) == [PIXEL] * len(x)


def test_occlusion_peaks_within_a_window_of_the_pixel():
    x = _one_pixel_images()
    maps = attribute(_OnePixel(), x, torch.ones(len(x), dtype=torch.long), "occlusion",
                     occlusion_window=3, occlusion_stride=1)
    for row, col in _argmax_pixel(maps):
        assert abs(row - PIXEL[0]) < 3 and abs(col - PIXEL[1]) < 3
    # far from the pixel, occluding changes nothing
    assert maps[:, 0, 0].abs().max() < 1e-6


def test_a_perfect_map_beats_the_random_order_on_deletion_and_insertion():
    model, x = _OnePixel(), _one_pixel_images(batch=8)
    target = torch.ones(len(x), dtype=torch.long)
    perfect = torch.zeros(len(x), *x.shape[2:])
    perfect[:, PIXEL[0], PIXEL[1]] = 1.0
    result = deletion_insertion(model, x, target, perfect, steps=16, seed=3)
    assert set(result) == {"deletion", "insertion", "deletion_random", "insertion_random"}
    assert all(v.shape == (len(x),) for v in result.values())
    # the pixel goes first: the probability drops (rises) at the first step
    assert (result["deletion"] < 0.05).all() and (result["insertion"] > 0.9).all()
    assert result["deletion"].mean() < result["deletion_random"].mean() - 0.2
    assert result["insertion"].mean() > result["insertion_random"].mean() + 0.2
    # the worst map (the pixel last) is worse than random
    worst = deletion_insertion(model, x, target, -perfect, steps=16, seed=3)
    assert worst["deletion"].mean() > result["deletion_random"].mean()
    # the baseline depends on the seed and images only: paired across methods
    other = deletion_insertion(model, x, target, torch.rand_like(perfect), steps=16, seed=3)
    np.testing.assert_array_equal(other["deletion_random"], result["deletion_random"])
    alone = deletion_insertion(model, x, target, perfect, steps=16, seed=3, baseline=False)
    assert set(alone) == {"deletion", "insertion"}
    np.testing.assert_array_equal(alone["insertion"], result["insertion"])


def test_deletion_insertion_refuses_maps_of_another_shape():
    x = _one_pixel_images(batch=2)
    with pytest.raises(LifecycleError, match=r"\(2, 12, 15\)"):
        deletion_insertion(_OnePixel(), x, torch.ones(2, dtype=torch.long),
                           torch.zeros(2, 12, 15))


def test_drift_of_identical_negated_and_random_maps():
    generator = torch.Generator().manual_seed(0)
    maps = torch.rand(4, 8, 10, generator=generator)
    same = attribution_drift(maps, maps.clone())
    assert same == pytest.approx({"spearman": 1.0, "top_overlap": 1.0})
    assert attribution_drift(maps, -maps)["spearman"] == pytest.approx(-1.0)
    other = torch.rand(4, 8, 10, generator=generator)
    other[0, :2] = 0.5  # ties: averaged ranks, as scipy does
    expected = np.mean([spearmanr(a.flatten(), b.flatten()).statistic
                        for a, b in zip(maps.numpy(), other.numpy(), strict=True)])
    assert attribution_drift(maps, other)["spearman"] == pytest.approx(expected, abs=1e-9)


def test_drift_top_overlap_counts_shared_top_pixels():
    a = torch.arange(10.0).reshape(1, 2, 5)  # top 2 (fraction 0.2): pixels 9 and 8
    b = a.clone()
    b[0, 1, 4] = -1.0  # pixel 9 falls out of B's top: B's top 2 are 8 and 7
    assert attribution_drift(a, b, top_fraction=0.2)["top_overlap"] == pytest.approx(0.5)


def test_drift_refuses_maps_of_different_shapes():
    with pytest.raises(LifecycleError, match=r"\(2, 4, 4\).*\(2, 4, 5\)"):
        attribution_drift(torch.zeros(2, 4, 4), torch.zeros(2, 4, 5))


def test_unknown_method_is_refused():
    with pytest.raises(LifecycleError, match="Unknown attribution method 'lime'"):
        attribute(_OnePixel(), _one_pixel_images(2), torch.ones(2, dtype=torch.long), "lime")


@pytest.fixture(scope="module")
def int8_model() -> tuple[nn.Module, nn.Module, torch.Tensor]:
    if "x86" not in torch.backends.quantized.supported_engines:
        pytest.skip("the x86 (fbgemm) quantized engine is not available in this torch build")
    from model_lifecycle.compression.quantize import quantize  # noqa: PLC0415

    torch.manual_seed(0)
    model = build_model("small_cnn", 3, 3, width=4)
    with torch.no_grad():  # batch-norm statistics of the data, else the output is ~constant
        for _ in range(20):
            model(torch.rand(16, 3, 16, 16))
    x = torch.rand(4, 3, 16, 16)
    return model.eval(), quantize(model.eval(), x, mode="static", calibration=[x]), x


def test_int8_models_are_explained_by_occlusion_only(int8_model):
    model, quantized, x = int8_model
    target = quantized(x).argmax(1)
    assert methods_for(quantized) == GRADIENT_FREE == ("occlusion",)
    maps = attribute(quantized, x, target, "occlusion")
    assert maps.shape == (4, 16, 16) and torch.isfinite(maps).all() and maps.abs().sum() > 0
    # INT8 explains itself much as its float original does
    assert attribution_drift(attribute(model, x, target, "occlusion"), maps)["spearman"] > 0.5
    result = deletion_insertion(quantized, x, target, maps, steps=4)
    assert all(v.shape == (4,) and np.isfinite(v).all() for v in result.values())
    for method in ("integrated_gradients", "saliency", "grad_cam"):
        with pytest.raises(LifecycleError, match="INT8"):
            attribute(quantized, x, target, method)


@pytest.mark.parametrize("channels", [1, 3])
def test_explanation_figure_has_a_panel_per_image_and_map(channels):
    images = torch.rand(3, channels, 12, 16)
    maps = {m: torch.rand(3, 12, 16) for m in ("saliency", "occlusion")}
    maps["occlusion"][1] = 0
    maps["occlusion"][1, 5, 7] = 1  # one pixel explains image 1
    fig = explanation_figure(images, maps, torch.tensor([0, 1, 2]), [0, 1, 1],
                             ["cat", "dog", "fox"], title="float model")
    assert isinstance(fig, Figure) and fig.get_suptitle() == "float model"
    (ax,) = fig.axes
    texts = [t.get_text() for t in ax.texts]
    assert texts[:3] == ["image", "saliency", "occlusion"]
    assert texts[3:] == ["pred cat\ntrue cat", "pred dog\ntrue dog", "pred fox\ntrue dog"]
    mosaic = ax.images[0].get_array()
    gap = 2  # 12% of 16 pixels, rounded
    assert mosaic.shape == (3 * 12 + 2 * gap, 3 * 16 + 2 * gap, 3)

    def cell(r, c):
        return mosaic[r * (12 + gap):r * (12 + gap) + 12, c * (16 + gap):c * (16 + gap) + 16]

    picture = images[1].permute(1, 2, 0).numpy()
    assert np.allclose(cell(1, 0), np.broadcast_to(picture, (12, 16, 3)), atol=1e-6)
    # the overlay: the map's one pixel at jet's top colour, the rest at its bottom one,
    # half over the image in grayscale
    gray = picture.mean(-1)
    overlay = cell(1, 2)
    assert np.allclose(overlay[5, 7], 0.5 * np.array([0.5, 0, 0]) + 0.5 * gray[5, 7],
                       atol=0.01)
    assert np.allclose(overlay[0, 0], 0.5 * np.array([0, 0, 0.5]) + 0.5 * gray[0, 0],
                       atol=0.01)


@pytest.mark.parametrize("training", [True, False])
def test_the_model_mode_is_restored_and_batch_norm_statistics_untouched(training):
    model = build_model("small_cnn", 3, 3, width=4).train(training)
    stats = model.encoder.stages[0][0][1].running_mean.clone()
    x, target = torch.rand(2, 3, 16, 16), torch.tensor([0, 2])
    for method in METHODS:
        maps = attribute(model, x, target, method, ig_steps=4)
        assert model.training is training, method
    deletion_insertion(model, x, target, maps, steps=4)
    assert model.training is training
    # run in eval mode: batch norm used, never updated, its running statistics
    assert torch.equal(model.encoder.stages[0][0][1].running_mean, stats)


@pytest.mark.parametrize("reference", ["blur", "black"])
def test_integrated_gradients_explain_the_difference_from_the_reference(reference):
    # completeness: a pixel map sums to f(x) - f(reference) for the target logit, so the
    # reference really is IG's baseline (and the one deletion and occlusion use)
    torch.manual_seed(0)
    model = build_model("small_cnn", 3, 3, width=4).eval()
    x = torch.rand(2, 3, 16, 16)
    target = torch.tensor([0, 2])
    maps = attribute(model, x, target, "integrated_gradients", ig_steps=64,
                     reference=reference)
    with torch.no_grad():
        gap = (model(x) - model(reference_image(x, reference))).gather(1, target[:, None])
    assert maps.sum((1, 2)).numpy() == pytest.approx(gap.squeeze(1).numpy(), rel=0.05,
                                                     abs=1e-3)


def test_the_reference_is_the_blurred_image_or_black_and_nothing_else():
    x = torch.rand(1, 3, 16, 16)
    assert torch.equal(reference_image(x, "black"), torch.zeros_like(x))
    blurred = reference_image(x, "blur")
    assert blurred.shape == x.shape and blurred.std() < x.std()
    with pytest.raises(LifecycleError, match="Unknown attribution reference 'gray'"):
        reference_image(x, "gray")


@pytest.mark.parametrize(("window", "stride", "size", "constant"), [
    (4, 2, (8, 8), False),
    (8, 2, (8, 8), True),    # the window is the image
    (64, 2, (16, 16), True),  # clipped to the image: one place
    (7, 2, (8, 8), False),   # slid to the edge: a second place
    (7, 7, (8, 8), False),
    (8, 2, (8, 12), False),  # slides along the width
])
def test_an_occlusion_window_that_fits_once_is_named(window, stride, size, constant):
    """A constant occlusion map (the window fits in one place) is refused before the run:
    every pixel would get the same score, and drift and faithfulness would mean nothing."""
    from model_lifecycle.trust.config import ExplainParams  # noqa: PLC0415

    params = ExplainParams(occlusion_window=window, occlusion_stride=stride)
    said = params.constant_occlusion(*size, "ingest.image_size")
    assert (said is not None) == constant
    if constant:
        assert said == (f"explain.occlusion_window {window} covers the whole "
                        f"{size[0]}×{size[1]} images (ingest.image_size), so every "
                        f"occlusion map would be constant: set it to {max(size) - 1} or "
                        f"less (and explain.occlusion_stride no larger).")
        assert ExplainParams(occlusion_window=max(size) - 1, occlusion_stride=stride
                             ).constant_occlusion(*size, "") is None  # the fix works
    # what the explainer does with them: a constant map exactly when it is named
    torch.manual_seed(0)
    model = nn.Sequential(nn.Flatten(), nn.Linear(size[0] * size[1], 2)).eval()
    maps = attribute(model, torch.rand(1, 1, *size), torch.zeros(1, dtype=torch.long),
                     "occlusion", occlusion_window=window, occlusion_stride=stride)
    assert bool(torch.allclose(maps, maps.flatten()[0])) == constant


def test_an_occlusion_stride_larger_than_its_window_is_named():
    from pydantic import ValidationError  # noqa: PLC0415

    from model_lifecycle.trust.config import ExplainParams  # noqa: PLC0415

    with pytest.raises(ValidationError, match=r"explain.occlusion_stride 5 is larger than "
                                              r"explain.occlusion_window 4"):
        ExplainParams(occlusion_window=4, occlusion_stride=5)


@pytest.mark.parametrize(("height", "width"), [(12, 12), (12, 20), (20, 12)])
def test_explanation_figure_boxes_fit_the_images_shape(height, width):
    """The mosaic fills its box: non-square images used to leave half the figure blank."""
    images = torch.rand(2, 1, height, width)
    fig = explanation_figure(images, {"saliency": torch.rand(2, height, width)}, [0, 1],
                             [0, 1], ["a", "b"], title="t")
    (ax,) = fig.axes
    ax.apply_aspect()  # where matplotlib draws the mosaic: its box shrunk to its shape
    box = ax.get_position()
    fig_w, fig_h = fig.get_size_inches()
    drawn = (box.width * fig_w) * (box.height * fig_h)
    allotted = (fig_w - 1.2) * (fig_h - 1.0)  # less the labels' and the title's margins
    assert drawn / allotted > 0.9
