import pytest
import torch

from model_lifecycle.augment.augmenter import BatchAugmenter, LabelMixer
from model_lifecycle.augment.config import (
    AugmentParams,
    SupervisedPolicy,
    ViewPolicy,
    policy_from_artifact,
    resolve_policy,
)
from model_lifecycle.errors import LifecycleError

SIMCLR = {"random_resized_crop": {"scale": [0.2, 1.0]}, "horizontal_flip": {},
          "color_jitter": {}, "grayscale": {}, "gaussian_blur": {}}
EVERYTHING = {"random_crop": {"padding": 2}, "horizontal_flip": {}, "auto_augment": {},
              "color_jitter": {}, "grayscale": {}, "gaussian_blur": {}, "random_erasing": {}}


def _images(b=8, c=3, h=16, w=16):
    return torch.randint(0, 256, (b, c, h, w), generator=torch.Generator().manual_seed(0),
                         dtype=torch.uint8)


@pytest.mark.parametrize("policy", [SIMCLR, EVERYTHING, {}], ids=["simclr", "all", "none"])
@pytest.mark.parametrize("shape", [(8, 3, 16, 16), (1, 1, 9, 13), (33, 3, 32, 32)])
def test_augmenter_keeps_shape_and_range(policy, shape):
    augment = BatchAugmenter(ViewPolicy.model_validate(policy))
    out = augment(_images(*shape), torch.Generator().manual_seed(1))
    assert out.shape == shape and out.dtype == torch.float32
    assert out.min() >= 0 and out.max() <= 1


def test_empty_policy_is_exactly_the_scaled_input():
    images = _images()
    out = BatchAugmenter(ViewPolicy())(images, torch.Generator())
    assert torch.equal(out, images.float() / 255)


def test_same_seed_same_views_and_input_untouched():
    images = _images()
    before = images.clone()
    augment = BatchAugmenter(ViewPolicy.model_validate(EVERYTHING))
    a = augment(images, torch.Generator().manual_seed(3))
    b = augment(images, torch.Generator().manual_seed(3))
    assert torch.equal(a, b)
    assert torch.equal(images, before)


def test_refuses_float_input():
    with pytest.raises(ValueError, match="expected uint8"):
        BatchAugmenter(ViewPolicy())(torch.rand(2, 3, 4, 4), torch.Generator())


def test_policy_artifact_round_trip_fills_defaults():
    params = AugmentParams.model_validate({"pretrain": {"color_jitter": {"hue": 0.05}}})
    artifact = resolve_policy(params)
    assert artifact["pretrain"]["color_jitter"] == {"brightness": 0.4, "contrast": 0.4,
                                                    "saturation": 0.4, "hue": 0.05, "p": 0.8}
    assert artifact["pretrain"]["random_crop"] is None
    assert policy_from_artifact(artifact, "pretrain") == params.pretrain
    assert policy_from_artifact(artifact, "supervised") == params.supervised


def test_artifact_of_another_format_is_refused():
    artifact = resolve_policy(AugmentParams())
    artifact["format"] = 99
    with pytest.raises(LifecycleError, match="run `kedro run --pipelines=augment` again"):
        policy_from_artifact(artifact, "pretrain")


def test_two_crops_at_once_are_refused():
    with pytest.raises(ValueError, match="not both"):
        ViewPolicy.model_validate({"random_crop": {}, "random_resized_crop": {}})


def test_label_mixer_soft_labels_sum_to_one():
    policy = SupervisedPolicy.model_validate({"mixup": {"alpha": 0.4}, "cutmix": {}})
    mixer = LabelMixer(policy, num_classes=5)
    images = torch.rand(8, 3, 8, 8)
    labels = torch.arange(8) % 5
    torch.manual_seed(0)
    mixed, soft = mixer(images, labels)
    assert soft.shape == (8, 5)
    torch.testing.assert_close(soft.sum(1), torch.ones(8))
    assert (soft.max(1).values < 1).any()  # some labels really are mixed


def test_label_mixer_off_gives_one_hot():
    mixer = LabelMixer(SupervisedPolicy(), num_classes=3)
    assert not mixer.enabled
    images = torch.rand(4, 1, 4, 4)
    out, soft = mixer(images, torch.tensor([0, 1, 2, 0]))
    assert torch.equal(out, images)
    assert soft.tolist() == [[1, 0, 0], [0, 1, 0], [0, 0, 1], [1, 0, 0]]


def test_alternating_flip_shows_every_image_both_ways_every_two_epochs():
    from model_lifecycle.training.data import BatchStream  # noqa: PLC0415

    # 40 distinct images whose mirror image differs from them; flip only, so each view
    # is the image or its mirror and says which
    images = _images(b=40, h=6, w=6).numpy()
    policy = SupervisedPolicy.model_validate({"horizontal_flip": {"alternate": True}})
    stream = BatchStream(images, torch.arange(40).numpy(), torch.arange(40).numpy(),
                         batch_size=8, augment=BatchAugmenter(policy), seed=5)
    source = torch.from_numpy(images).float() / 255

    def flipped(epoch):
        out = {}
        for [views], labels in stream.epoch(epoch):
            for view, i in zip(views, labels.tolist(), strict=True):
                mirrored = torch.equal(view, source[i].flip(-1))
                assert mirrored or torch.equal(view, source[i])
                out[i] = mirrored
        return [out[i] for i in range(40)]

    epochs = [flipped(e) for e in range(4)]
    assert 10 < sum(epochs[0]) < 30  # about half, drawn per image
    assert epochs[1] == [not f for f in epochs[0]]  # reversed the next epoch
    assert epochs[2] == epochs[0] and epochs[3] == epochs[1]
    # without `alternate` the flips are drawn anew: some image is the same way twice
    drawn = BatchStream(images, torch.arange(40).numpy(), torch.arange(40).numpy(),
                        batch_size=8, seed=5, augment=BatchAugmenter(
                            SupervisedPolicy.model_validate({"horizontal_flip": {}})))
    stream = drawn
    again = [flipped(e) for e in range(2)]
    assert any(a == b for a, b in zip(*again, strict=True))


def test_alternating_flip_is_refused_for_pretraining_views():
    with pytest.raises(ValueError, match="pretrain.horizontal_flip.alternate would give both "
                                         "views of an image the same flip"):
        AugmentParams.model_validate({"pretrain": {"horizontal_flip": {"alternate": True}}})
