import numpy as np
import pytest
from PIL import Image

from model_lifecycle.data.convert import (
    MAX_PIXELS,
    PILLOW_LIMIT,
    ImageDecodeError,
    decode_file,
    to_array,
)
from tests.conftest import bomb_png, make_image


@pytest.mark.parametrize("mode", ["L", "RGB", "RGBA", "P", "LA", "CMYK", "I;16", "1"])
@pytest.mark.parametrize("channels", [1, 3])
def test_every_mode_becomes_uint8_chw(mode, channels):
    image = make_image("RGB", (11, 7), seed=0).convert(mode) if mode not in ("I;16",) \
        else make_image("I;16", (11, 7), seed=0)
    array = to_array(image, (5, 6), channels)
    assert array.dtype == np.uint8
    assert array.shape == (channels, 5, 6)


def test_transparent_pixels_become_black():
    rgba = np.zeros((4, 4, 4), dtype=np.uint8)
    rgba[..., :3] = 255  # white, but fully transparent …
    rgba[0, 0, 3] = 255  # … except one opaque white pixel
    array = to_array(Image.fromarray(rgba, "RGBA"), (4, 4), 3)
    assert array[:, 0, 0].tolist() == [255, 255, 255]
    assert array[:, 1:, :].max() == 0


def test_palette_with_transparency_is_composited():
    image = Image.new("P", (2, 2), 1)
    image.putpalette([0, 0, 0, 200, 100, 50] + [0] * 762)
    image.info["transparency"] = 1
    assert to_array(image, (2, 2), 3).max() == 0


def test_sixteen_bit_is_scaled_not_clipped():
    image = Image.fromarray(np.full((3, 3), 65535, dtype=np.uint16))
    assert to_array(image, (3, 3), 1).min() == 255
    image = Image.fromarray(np.full((3, 3), 32768, dtype=np.uint16))
    assert 126 <= to_array(image, (3, 3), 1).max() <= 128


def test_center_crop_keeps_aspect_and_stretch_does_not():
    wide = np.zeros((10, 30), dtype=np.uint8)
    wide[:, :10] = 255  # left third white
    image = Image.fromarray(wide)
    cropped = to_array(image, (10, 10), 1, "center_crop")
    stretched = to_array(image, (10, 10), 1, "stretch")
    assert cropped.max() < 50  # the centre third is black
    assert stretched[0, :, :2].min() > 200  # the white third squeezed to the left


def test_decode_reports_corrupt_and_non_image_files(tmp_path):
    (tmp_path / "text.png").write_text("not an image")
    with pytest.raises(ImageDecodeError):
        decode_file(tmp_path / "text.png", (4, 4), 3)
    good = tmp_path / "ok.jpg"
    make_image("RGB", (64, 64), 0).save(good, quality=95)
    truncated = tmp_path / "truncated.jpg"
    truncated.write_bytes(good.read_bytes()[:300])
    with pytest.raises(ImageDecodeError):
        decode_file(truncated, (8, 8), 3)
    assert decode_file(good, (8, 8), 3).shape == (3, 8, 8)


def test_jpeg_draft_decode_stays_close_to_full_decode(tmp_path):
    photo = np.kron(np.random.default_rng(0).integers(0, 256, (8, 8, 3)), np.ones((64, 64, 1)))
    Image.fromarray(photo.astype(np.uint8)).save(tmp_path / "big.jpg", quality=95)
    fast = decode_file(tmp_path / "big.jpg", (8, 8), 3).astype(int)
    with Image.open(tmp_path / "big.jpg") as image:
        image.load()
        full = to_array(image, (8, 8), 3).astype(int)
    assert np.abs(fast - full).mean() < 6


def test_a_decompression_bomb_is_refused_from_its_header(tmp_path):
    path = tmp_path / "bomb.png"
    path.write_bytes(bomb_png(20_000, 20_000))
    assert path.stat().st_size < 1000
    with pytest.raises(ImageDecodeError, match=r"^more than 178,956,970 pixels, which "
                                               r"Pillow refuses to decode as a possible "
                                               r"decompression bomb whatever "
                                               r"ingest.max_pixels says: resize the image$"):
        decode_file(path, (8, 8), 1)
    path.write_bytes(bomb_png(10_000, 10_000))  # between the two: the parameter's own words
    with pytest.raises(ImageDecodeError, match=r"^10000×10000 = 100,000,000 pixels, more "
                                               r"than the limit of 89,478,485"):
        decode_file(path, (8, 8), 1)
    # below Pillow's own limit, the parameter still applies
    path.write_bytes(bomb_png(3000, 3000))
    with pytest.raises(ImageDecodeError, match=r"9,000,000 pixels, more than the limit of "
                                               r"1,000,000 \(ingest.max_pixels\)"):
        decode_file(path, (8, 8), 1, max_pixels=1_000_000)
    assert MAX_PIXELS == Image.MAX_IMAGE_PIXELS


def test_pillows_hard_limit_stays_whatever_the_parameter(tmp_path):
    path = tmp_path / "bigger.png"
    path.write_bytes(bomb_png(60_000, 60_000))
    with pytest.raises(ImageDecodeError, match=r"Pillow refuses to decode as a possible "
                                               r"decompression bomb"):
        decode_file(path, (8, 8), 1, max_pixels=10**12)


def test_the_parameter_cannot_promise_more_than_pillow_decodes():
    from model_lifecycle.data.config import IngestParams  # noqa: PLC0415
    from model_lifecycle.errors import LifecycleError  # noqa: PLC0415
    from model_lifecycle.params import parse_params  # noqa: PLC0415

    assert parse_params(IngestParams, {"max_pixels": 178_956_970}, "ingest").max_pixels \
        == PILLOW_LIMIT == 178_956_970
    with pytest.raises(LifecycleError, match=r"ingest.max_pixels.*300000000.*178956970"):
        parse_params(IngestParams, {"max_pixels": 300_000_000}, "ingest")


@pytest.mark.parametrize(("orientation", "stored_as"), [
    (2, Image.Transpose.FLIP_LEFT_RIGHT), (3, Image.Transpose.ROTATE_180),
    (6, Image.Transpose.ROTATE_90), (8, Image.Transpose.ROTATE_270)])
def test_a_photo_stored_sideways_is_decoded_upright(tmp_path, orientation, stored_as):
    """A camera stores the sensor's pixels turned and an EXIF orientation tag saying how
    to show them; viewers (and so whoever sorted the photos) see them upright, and so
    must training."""
    upright = np.zeros((40, 24), dtype=np.uint8)
    upright[:8, :8] = 255  # a white square in the top-left corner
    exif = Image.Exif()
    exif[0x0112] = orientation
    path = tmp_path / f"photo{orientation}.jpg"
    Image.fromarray(upright).transpose(stored_as).save(path, quality=95, exif=exif)
    decoded = decode_file(path, (40, 24), 1, resize="stretch")[0]
    assert decoded[1:7, 1:7].mean() > 200 and decoded[12:].mean() < 30, orientation


def test_one_scale_for_every_sixteen_bit_file_and_floats_from_zero_to_one():
    dark = np.full((3, 3), 200, dtype=np.int32)
    as_i = to_array(Image.fromarray(dark, mode="I"), (3, 3), 1)
    as_i16 = to_array(Image.fromarray(dark.astype(np.uint16)), (3, 3), 1)
    assert as_i.max() == as_i16.max() == 1  # 200 of 65535, whatever the container
    ramp = np.linspace(0, 1, 9, dtype=np.float32).reshape(3, 3)
    assert to_array(Image.fromarray(ramp, mode="F"), (3, 3), 1).ravel().tolist() == \
        np.round(ramp * 255).astype(np.uint8).ravel().tolist()
    # floats have no fixed range: above 1 they are 0-255, above 255 a 16-bit range
    assert to_array(Image.fromarray(np.full((3, 3), 200.0, np.float32), mode="F"),
                    (3, 3), 1).max() == 200
    assert to_array(Image.fromarray(np.full((3, 3), 65535.0, np.float32), mode="F"),
                    (3, 3), 1).max() == 255
