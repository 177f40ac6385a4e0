"""The registered pyfunc on an untrained RGB model, in process: it takes grayscale images
too, answers bad rows with a per-row error, and refuses a request it cannot answer with
one sentence — through the function MLflow's scoring server runs for POST /invocations.

(The served digits model, grayscale, is tested over HTTP in
tests/pipelines/test_lifecycle_run.py.)"""

from __future__ import annotations

import base64
import io
import json
from pathlib import Path

import mlflow
import numpy as np
import pandas as pd
import pytest
from mlflow.exceptions import MlflowException
from mlflow.pyfunc import scoring_server
from PIL import Image

from model_lifecycle.io.torch_model import TorchModelDataset
from model_lifecycle.models import build_model
from model_lifecycle.serving.predict import predict_files
from model_lifecycle.serving.pyfunc import SIGNATURE
from model_lifecycle.serving.registry import MODEL_CODE

MAX_ROWS = 4
# the tiny model is saved without an input example (which would run it once more)
pytestmark = pytest.mark.filterwarnings("ignore:.*An input example was not provided")


@pytest.fixture(scope="module")
def rgb_model(tmp_path_factory: pytest.TempPathFactory) -> mlflow.pyfunc.PyFuncModel:
    """The pyfunc of an untrained 3-class RGB model of 8×8 images, at most 4 rows a call."""
    tmp = tmp_path_factory.mktemp("pyfunc")
    model = build_model("small_cnn", 3, in_channels=3, width=4).eval()
    TorchModelDataset(filepath=str(tmp / "model.pt")).save(model)
    (tmp / "preprocessing.json").write_text(json.dumps({
        "class_names": ["a", "b", "c"], "channels": 3, "size_hw": [8, 8],
        "resize": "center_crop", "max_pixels": 10_000, "max_rows": MAX_ROWS}))
    mlflow.pyfunc.save_model(str(tmp / "pyfunc"), python_model=str(MODEL_CODE),
                             signature=SIGNATURE, pip_requirements=["mlflow"],  # not inferred
                             artifacts={
                                 "model": str(tmp / "model.pt"),
                                 "preprocessing": str(tmp / "preprocessing.json")})
    return mlflow.pyfunc.load_model(str(tmp / "pyfunc"))


def _png(pixels: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, format="PNG")
    return buffer.getvalue()


def _invoke(model: mlflow.pyfunc.PyFuncModel, body: dict) -> tuple[int, dict]:
    """Status and strict-JSON body of POST /invocations, as the scoring server answers."""
    try:
        answer = scoring_server.invocations(json.dumps(body).encode(), "application/json",
                                            model, model.metadata.get_input_schema())
        status, text = answer.status, answer.response
    except MlflowException as exc:  # the server's handler turns these into the response
        status, text = exc.get_http_status_code(), exc.serialize_as_json()
    return status, json.loads(text, parse_constant=_not_json)


def _not_json(constant: str):
    raise ValueError(f"the answer holds {constant}, which is not JSON")


def test_a_grayscale_image_is_answered_by_an_rgb_model(rgb_model):
    gray = np.random.default_rng(0).integers(0, 256, (8, 8), dtype=np.uint8)
    as_rgb = rgb_model.predict(pd.DataFrame({"pixels": [np.repeat(gray[:, :, None], 3, 2)]}))
    for image in (_png(gray), gray[:, :, None]):  # (the signature asks for H×W×C arrays)
        column = "image" if isinstance(image, bytes) else "pixels"
        answer = rgb_model.predict(pd.DataFrame({column: [image]}))
        assert answer["error"][0] is None
        assert answer["probabilities"][0] == pytest.approx(as_rgb["probabilities"][0])


def test_bad_rows_get_an_error_and_nulls_in_strict_json(rgb_model):
    good = base64.b64encode(_png(np.zeros((8, 8, 3), np.uint8))).decode()
    rows = [good, base64.b64encode(b"not an image").decode(), "", good]
    status, body = _invoke(rgb_model, {"dataframe_split": {"columns": ["image"],
                                                           "data": [[r] for r in rows]}})
    assert status == 200
    first, not_image, empty, last = body["predictions"]
    assert first == last and first["error"] is None and first["class"] in ("a", "b", "c")
    assert not_image["error"] == "not an image PIL can read"
    assert empty["error"] == "an empty image: the 'image' value holds no bytes"
    for bad in (not_image, empty):
        assert bad["class"] is bad["confidence"] is bad["probabilities"] is None
    # ragged pixel rows, which numpy refuses, are one row's error too (not a traceback)
    status, body = _invoke(rgb_model, {"dataframe_split": {"columns": ["pixels"], "data": [
        [[[[1, 2, 3], [4, 5, 6]], [[7, 8, 9]]]]]}})
    assert status == 200 and "equal lengths" in body["predictions"][0]["error"]
    # rows of both columns, nulls, floats, H×W arrays, a number and a row giving both:
    # each row answered or given its own error (MLflow's server converts no value first)
    gray = [[0, 255], [255, 0]]
    rows = [[good, None], [None, gray], [None, [[0.5, 1.0], [0.0, 0.0]]], [None, None],
            [7, None], [good, gray], [None, [[0.0, 255.0], [255.0, 0.0]]]]
    answers = []
    for start in range(0, len(rows), MAX_ROWS):
        status, body = _invoke(rgb_model, {"dataframe_split": {
            "columns": ["image", "pixels"], "data": rows[start:start + MAX_ROWS]}})
        assert status == 200
        answers += body["predictions"]
    assert [a["error"] is None for a in answers] == [True, True, False, False, False, False,
                                                       True]
    assert answers[1] == answers[6]  # whole-number floats are the integers they hold
    assert "fractions" in answers[2]["error"] and "no image" in answers[3]["error"]
    assert answers[5]["error"] == "both an 'image' and a 'pixels' value: give one per row"
    assert answers[4]["error"].startswith("a number (7) in the 'image' column: give the base64")
    _, text_pixels = _invoke(rgb_model, {"inputs": [{"pixels": "abc"}]})
    assert text_pixels["predictions"][0]["error"].startswith("text in the 'pixels' column")
    # base64 in MLflow's `inputs` and `instances` forms, and as a data URL, as in a split
    for request in ({"inputs": [{"image": good}]}, {"instances": [{"image": good}]},
                    {"dataframe_records": [{"image": f"data:image/png;base64,{good}"}]}):
        status, body = _invoke(rgb_model, request)
        assert status == 200 and body["predictions"] == [first], request
    # the columnar forms (one list per column), and TensorFlow Serving's {"b64": …}
    other = base64.b64encode(_png(np.full((8, 8), 200, np.uint8))).decode()
    _, alone = _invoke(rgb_model, {"inputs": [{"image": other}]})
    for request in ({"inputs": {"image": [good, other]}}, {"instances": {"image": [good, other]}},
                    {"inputs": {"image": [{"b64": good}, {"b64": other}]}},
                    {"instances": [{"image": {"b64": good}}, {"image": other}]}):
        status, body = _invoke(rgb_model, request)
        assert status == 200 and body["predictions"] == [first, *alone["predictions"]], request
    # no image at all, in every form: no prediction (not one row of error)
    for request in ({"inputs": {"image": []}}, {"instances": {"image": []}},
                    {"dataframe_split": {"columns": ["image"], "data": []}}):
        assert _invoke(rgb_model, request) == (200, {"predictions": []}), request


@pytest.mark.parametrize("columns, rows, sentence", [
    (["picture"], 1, "The request has neither an 'image' column (the base64 of an image "
     "file's bytes) nor a 'pixels' column (uint8 arrays H×W×C): this model reads those two "
     "columns and ignores any other."),
    (["image"], MAX_ROWS + 1, "The request has 5 rows, more than the 4 this model answers "
     "at once (register.max_rows): send at most 4 images per request."),
])
def test_a_request_it_cannot_answer_is_refused_in_one_sentence(rgb_model, columns, rows,
                                                                 sentence):
    image = base64.b64encode(_png(np.zeros((8, 8), np.uint8))).decode()
    status, body = _invoke(rgb_model, {"dataframe_split": {"columns": columns,
                                                           "data": [[image]] * rows}})
    assert status == 400
    # not prefixed with the whole request, as the scoring server does to other errors
    assert body["message"] == sentence
    assert body["error_code"] == "INVALID_PARAMETER_VALUE"
    assert "stack_trace" not in body
    # in process, the same refusal
    with pytest.raises(MlflowException, match="register.max_rows|neither"):
        rgb_model.predict(pd.DataFrame({columns[0]: [base64.b64decode(image)] * rows}))
    assert _invoke(rgb_model, {"dataframe_split": {"columns": ["image"], "data": [
        [image]] * MAX_ROWS}})[0] == 200


def test_a_request_of_too_many_pixels_in_all_is_refused_before_decoding(rgb_model,
                                                                        monkeypatch):
    """register.max_request_pixels: counted from the headers (a PNG, its base64, a data
    URL, pixel arrays), so that a thousand tiny files of huge black images cannot hold a
    worker for half an hour; a row whose size cannot be told is left to its own error."""
    prep = rgb_model.unwrap_python_model()._prep
    monkeypatch.setitem(prep, "max_request_pixels", 20 * 20 * 2)
    big = base64.b64encode(_png(np.zeros((20, 20, 3), np.uint8))).decode()  # 400 pixels
    small = base64.b64encode(_png(np.zeros((8, 8, 3), np.uint8))).decode()
    within = [[big], [f"data:image/png;base64,{big}"], ["not base64!"]]
    status, body = _invoke(rgb_model, {"dataframe_split": {"columns": ["image"],
                                                           "data": within}})
    assert status == 200 and [p["error"] is None for p in body["predictions"]] == [
        True, True, False]
    from model_lifecycle.serving import images  # noqa: PLC0415

    def no_decoding(*_args, **_kwargs):
        raise AssertionError("an image of a refused request was decoded")

    monkeypatch.setattr(images, "to_model_input", no_decoding)
    status, body = _invoke(rgb_model, {"dataframe_split": {"columns": ["image"],
                                                           "data": [*within, [small]]}})
    assert status == 400 and body["message"] == (
        "The request's images hold 864 pixels together, more than the 800 this model "
        "decodes for one request (register.max_request_pixels): send fewer or smaller "
        "images per request.")
    status, _ = _invoke(rgb_model, {"dataframe_split": {"columns": ["pixels"], "data": [
        [np.zeros((20, 21), int).tolist()], [np.zeros((20, 20), int).tolist()]]}})
    assert status == 400  # 820 pixels of arrays
    # the file's own bytes, in process
    with pytest.raises(MlflowException, match="register.max_request_pixels"):
        rgb_model.predict(pd.DataFrame({"image": [base64.b64decode(big)] * 3}))
    # a version registered before the setting: the default budget, not none
    monkeypatch.delitem(prep, "max_request_pixels")
    from model_lifecycle.serving.config import MAX_REQUEST_PIXELS  # noqa: PLC0415
    from model_lifecycle.serving.pyfunc import request_pixels  # noqa: PLC0415
    assert request_pixels(prep) == MAX_REQUEST_PIXELS
    assert request_pixels({**prep, "max_request_pixels": None}) is None  # null: no limit


def test_batch_inference_of_large_images_goes_in_calls_under_the_pixel_budget(
        rgb_model, tmp_path: Path, monkeypatch):
    """A folder of photos larger in all than register.max_request_pixels is predicted in
    smaller calls, not refused."""
    monkeypatch.setitem(rgb_model.unwrap_python_model()._prep, "max_request_pixels", 1000)
    for i in range(5):  # 400 pixels each: two per call
        (tmp_path / f"{i}.png").write_bytes(_png(np.full((20, 20, 3), i, np.uint8)))
    (tmp_path / "notes.png").write_bytes(b"not an image")  # no size to tell: its own error
    files = sorted(tmp_path.iterdir())
    calls = []
    real = rgb_model.predict
    monkeypatch.setattr(rgb_model, "predict", lambda table: calls.append(len(table))
                        or real(table))
    answer = predict_files(rgb_model, tmp_path, files, batch_size=100)
    assert calls == [2, 2, 2] and len(answer) == 6
    assert answer["error"].notna().tolist() == [False] * 5 + [True]
    # one image over the budget by itself: its row says so, the others are answered
    (tmp_path / "9.png").write_bytes(_png(np.zeros((40, 40, 3), np.uint8)))  # 1,600 pixels
    answer = predict_files(rgb_model, tmp_path, sorted(tmp_path.iterdir()), batch_size=100)
    assert answer.set_index("file").loc["9.png", "error"] == (
        "the image holds 1,600 pixels, more than the 1,000 the model decodes for one call "
        "(register.max_request_pixels)")
    assert answer["error"].notna().sum() == 2  # 9.png and notes.png


def test_batch_inference_sends_at_most_max_rows_per_call(rgb_model, tmp_path: Path):
    for i in range(2 * MAX_ROWS + 1):
        (tmp_path / f"{i}.png").write_bytes(_png(np.full((8, 8), i, np.uint8)))
    files = sorted(tmp_path.iterdir())
    answer = predict_files(rgb_model, tmp_path, files, batch_size=100)
    assert len(answer) == len(files) and answer["error"].isna().all()
    # a link to nothing and an empty file: rows of their own, the others still answered
    (tmp_path / "5.png").unlink()
    (tmp_path / "5.png").symlink_to(tmp_path / "nowhere.png")
    (tmp_path / "6.png").write_bytes(b"")
    answer = predict_files(rgb_model, tmp_path, files, batch_size=100).set_index("file")
    assert answer.loc["5.png", "error"].startswith("cannot read the file: No such file")
    assert answer.loc["6.png", "error"] == "the file is empty"
    assert answer.loc[["5.png", "6.png"], "class"].isna().all()
    assert answer.drop(["5.png", "6.png"])["error"].isna().all()
    assert answer["class"].notna().sum() == len(files) - 2
