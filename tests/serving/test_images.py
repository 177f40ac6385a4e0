"""The registered model's preprocessing equals the ingest pipeline's, for file bytes and
for pixel arrays."""

from __future__ import annotations

import base64
import io

import numpy as np
import pytest
from PIL import Image

from model_lifecycle.data.convert import ImageDecodeError, decode_file
from model_lifecycle.serving.images import to_model_input
from tests.conftest import make_image


@pytest.mark.parametrize("mode, fmt", [("RGB", "PNG"), ("L", "PNG"), ("RGBA", "PNG"),
                                       ("P", "PNG"), ("RGB", "JPEG"), ("L", "JPEG")])
def test_bytes_are_converted_like_ingested_files(tmp_path, mode, fmt):
    image = make_image(mode, (20, 14), seed=3)
    path = tmp_path / f"x.{fmt.lower()}"
    image.save(path, format=fmt)
    for channels in (1, 3):
        expected = decode_file(path, (8, 8), channels)
        assert np.array_equal(to_model_input(path.read_bytes(), (8, 8), channels), expected)


def test_pixel_arrays_equal_their_png():
    rgb = np.random.default_rng(0).integers(0, 256, (12, 10, 3), dtype=np.uint8)
    buffer = io.BytesIO()
    Image.fromarray(rgb).save(buffer, format="PNG")
    from_png = to_model_input(buffer.getvalue(), (8, 8), 3)
    assert np.array_equal(to_model_input(rgb, (8, 8), 3), from_png)
    # nested lists (a JSON request) and int64 values are accepted too
    assert np.array_equal(to_model_input(rgb.astype(np.int64).tolist(), (8, 8), 3), from_png)
    gray = rgb[:, :, 0]
    assert np.array_equal(to_model_input(gray, (8, 8), 1),
                          to_model_input(gray[:, :, None], (8, 8), 1))


@pytest.mark.parametrize("bad, reason", [
    (b"not an image", "not an image"),
    (np.zeros((4, 4, 2), np.uint8), "H×W or H×W×C"),
    (np.full((4, 4), 300), "whole numbers 0-255, got values from 300 to 300"),
    (np.full((4, 4), 0.5), "fractions"),
    ([[1.0, float("nan")]], "NaN or infinite"),
    ("data:image/png;base64,@@@", "not base64"),
    (None, "no image"),
    (b"", "empty image"),
    ([[1, 2], [3]], "equal lengths"),  # ragged: numpy refuses it
    (np.array([np.array([1, 2]), np.array([3])], dtype=object), "equal lengths"),
    ([[None]], "numbers 0-255"),
    ([[]], "empty pixel array"),
    (np.array([b"aGVsbG8="]), "text where an image was expected"),  # base64 not decoded
])
def test_unusable_input_says_why(bad, reason):
    with pytest.raises(ImageDecodeError, match=reason):
        to_model_input(bad, (8, 8), 3)


def test_inference_reads_every_file_under_the_folder_but_hidden_ones_and_non_images(tmp_path):
    from model_lifecycle.serving.predict import files_to_predict  # noqa: PLC0415

    for relative in ("a.png", "sub/b.jpg", "sub/deeper/c", ".hidden/d.png", "e/.f.png",
                     "Thumbs.db", "sub/notes.txt"):
        (tmp_path / relative).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / relative).write_bytes(b"x")
    (tmp_path / "gone.png").symlink_to(tmp_path / "nowhere.png")  # its row says so
    files, left_out = files_to_predict(tmp_path)
    assert [p.relative_to(tmp_path).as_posix() for p in files] == [
        "a.png", "gone.png", "sub/b.jpg", "sub/deeper/c"]  # no suffix: may be an image
    assert sorted(p.name for p in left_out) == ["Thumbs.db", "notes.txt"]


def test_a_folder_of_no_image_says_what_it_left_out(tmp_path):
    from model_lifecycle.errors import LifecycleError  # noqa: PLC0415
    from model_lifecycle.serving.predict import files_to_predict  # noqa: PLC0415

    for name in ("a.txt", "b.csv", "c.json", "d.md"):
        (tmp_path / name).write_text("x")
    with pytest.raises(LifecycleError, match=r"holds no image files \(left out as never "
                                             r"images: a.txt, b.csv, c.json and 1 more\): put"):
        files_to_predict(tmp_path)


def test_a_plain_text_image_file_and_a_data_url_in_bytes_are_read():
    """A PNM in its text form is all base64 characters: its own bytes are tried first."""
    pgm = b"P2 2 2 255 0 255 255 0"
    expected = np.array([[0, 255], [255, 0]], dtype=np.uint8)
    assert np.array_equal(to_model_input(pgm, (2, 2), 1, "stretch")[0], expected)
    png = io.BytesIO()
    Image.fromarray(expected).save(png, format="PNG")
    url = b"data:image/png;base64," + base64.b64encode(png.getvalue())
    assert np.array_equal(to_model_input(url, (2, 2), 1, "stretch")[0], expected)
