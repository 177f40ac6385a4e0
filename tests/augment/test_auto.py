"""TrivialAugmentWide / RandAugment: torchvision's op tables, its ops, per-image draws."""

import pytest
import torch
from torchvision.transforms import RandAugment, TrivialAugmentWide
from torchvision.transforms.v2 import functional as TF

from model_lifecycle.augment import auto


@pytest.mark.parametrize(("method", "reference"), [
    ("trivial_augment_wide", TrivialAugmentWide()),
    ("rand_augment", RandAugment()),
])
def test_magnitude_tables_are_torchvisions(method, reference):
    if method == "rand_augment":
        theirs = reference._augmentation_space(31, (24, 40))  # (height, width)
    else:
        theirs = reference._augmentation_space(31)
    ours = auto.magnitude_table(method, 24, 40)
    for i, op in enumerate(auto.OPS):
        name = {"identity": "Identity", "shear_x": "ShearX", "shear_y": "ShearY",
                "translate_x": "TranslateX", "translate_y": "TranslateY",
                "rotate": "Rotate", "brightness": "Brightness", "color": "Color",
                "contrast": "Contrast", "sharpness": "Sharpness",
                "posterize": "Posterize", "solarize": "Solarize",
                "auto_contrast": "AutoContrast", "equalize": "Equalize"}[op]
        magnitudes, signed = theirs[name]
        expected = magnitudes.float()
        if op == "solarize":
            expected = expected / 255  # ours act on [0, 1] images
        if magnitudes.ndim == 0:
            expected = torch.zeros(31)
        torch.testing.assert_close(ours[i], expected, atol=1e-4, rtol=0)
        assert (op in auto._SIGNED) == signed


def _uint8_batch(n=6, seed=0):
    return torch.randint(0, 256, (n, 3, 16, 16), generator=torch.Generator().manual_seed(seed),
                         dtype=torch.uint8)


@pytest.mark.parametrize(("op", "theirs", "values"), [
    ("posterize", lambda img, v: TF.posterize(img, int(v)), [8.0, 6.0, 4.0, 2.0]),
    ("solarize", lambda img, v: TF.solarize(img, v * 255), [1.0, 0.6, 0.3, 0.0]),
    ("auto_contrast", lambda img, v: TF.autocontrast(img), [0.0] * 4),
    ("equalize", lambda img, v: TF.equalize(img), [0.0] * 4),
    ("sharpness", lambda img, v: TF.adjust_sharpness(img, 1 + v), [-0.5, 0.0, 0.5, 0.9]),
])
def test_colour_ops_match_torchvision_per_image(op, theirs, values):
    images = _uint8_batch(4)
    value = torch.tensor(values)
    ours = auto._COLOUR[op](images.float() / 255, value)
    for i, v in enumerate(values):
        expected = theirs(images[i], v).float() / 255
        # torchvision rounds to uint8 between steps (its blurred copy too); we stay in float
        torch.testing.assert_close(ours[i], expected, atol=2 / 255, rtol=0)


@pytest.mark.parametrize("method", ["trivial_augment_wide", "rand_augment"])
def test_each_image_draws_its_own_op(method):
    x = (_uint8_batch(1).float() / 255).expand(64, -1, -1, -1).contiguous()
    out = auto.auto_augment(x, method, 2, 9, torch.Generator().manual_seed(0))
    assert out.shape == x.shape
    assert out.min() >= 0 and out.max() <= 1
    distinct = {tuple(o.flatten()[:50].tolist()) for o in out}
    assert len(distinct) > 10


def test_identity_op_leaves_images_untouched():
    x = _uint8_batch(3).float() / 255
    op = torch.zeros(3, dtype=torch.long)  # "identity"
    assert torch.equal(auto._apply(x, op, torch.zeros(3)), x)
