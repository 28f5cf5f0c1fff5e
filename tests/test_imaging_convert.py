"""PIL <-> NumPy <-> OpenCV <-> torch conversions (hypothesis round trips), grey weights and the JSON encoder."""
from __future__ import annotations

import datetime as dt
import enum
import json
import math
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays
from PIL import Image

import imaging_samples as S
from imaging_samples import torch_single_thread  # noqa: F401  (fixture)
from ai_service.imaging.convert import (
    ImagingJSONEncoder,
    batch_to_pils,
    cv2_to_numpy,
    cv2_to_pil,
    dumps,
    flask_json_provider,
    gray_from_rgb_array,
    gray_tensor,
    gray_to_rgba,
    json_default,
    numpy_to_cv2,
    numpy_to_pil,
    numpy_to_tensor,
    pil_to_cv2,
    pil_to_numpy,
    pil_to_tensor,
    pils_to_batch,
    tensor_to_numpy,
    tensor_to_pil,
    to_gray,
)

DEVICES = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])
image_arrays = st.integers(1, 4).flatmap(
    lambda c: arrays(np.uint8, st.tuples(st.integers(1, 12), st.integers(1, 12), st.just(c)))
)

pytestmark = pytest.mark.usefixtures("torch_single_thread")


@settings(max_examples=60, deadline=None)
@given(arr=image_arrays)
def test_pil_numpy_round_trip_exact(arr: np.ndarray) -> None:
    im = numpy_to_pil(arr)
    assert im.mode == {1: "L", 2: "LA", 3: "RGB", 4: "RGBA"}[arr.shape[2]]
    assert np.array_equal(pil_to_numpy(im), arr)


@settings(max_examples=60, deadline=None)
@given(arr=image_arrays, as_uint8=st.booleans(), batch=st.booleans())
def test_pil_tensor_round_trip_exact(arr: np.ndarray, as_uint8: bool, batch: bool) -> None:
    im = numpy_to_pil(arr)
    t = pil_to_tensor(im, dtype=torch.uint8 if as_uint8 else torch.float32, batch=batch)
    c = arr.shape[2]
    assert tuple(t.shape) == ((1,) if batch else ()) + (c, arr.shape[0], arr.shape[1])
    assert t.is_contiguous()
    if not as_uint8:
        assert t.dtype == torch.float32 and float(t.min()) >= 0.0 and float(t.max()) <= 1.0
    assert np.array_equal(tensor_to_numpy(t), arr)
    assert np.array_equal(np.asarray(tensor_to_pil(t)).reshape(arr.shape), arr)


@settings(max_examples=60, deadline=None)
@given(arr=st.sampled_from([3, 4]).flatmap(lambda c: arrays(np.uint8, st.tuples(st.integers(1, 10), st.integers(1, 10), st.just(c)))))
def test_opencv_round_trips_exact(arr: np.ndarray) -> None:
    bgr = numpy_to_cv2(arr)
    assert np.array_equal(bgr[..., :3], arr[..., 2::-1])
    if arr.shape[2] == 4:
        assert np.array_equal(bgr[..., 3], arr[..., 3])
    assert np.array_equal(cv2_to_numpy(bgr), arr)
    assert np.array_equal(np.asarray(cv2_to_pil(pil_to_cv2(numpy_to_pil(arr)))), arr)


@settings(max_examples=40, deadline=None)
@given(arr=st.integers(1, 4).flatmap(
    lambda c: arrays(np.float32, st.tuples(st.integers(1, 8), st.integers(1, 8), st.just(c)),
                     elements=st.floats(0, 1, width=32))))
def test_float_arrays_keep_dtype_and_range(arr: np.ndarray) -> None:
    t = numpy_to_tensor(arr)
    assert t.dtype == torch.float32 and t.shape[0] == arr.shape[2]
    assert np.array_equal(tensor_to_numpy(t, np.float32), arr)  # exact float round trip
    u8 = numpy_to_tensor(arr, dtype=torch.uint8)
    assert np.array_equal(tensor_to_numpy(u8), np.clip(np.rint(arr * 255), 0, 255).astype(np.uint8))
    if arr.shape[2] == 2:  # OpenCV has no grey+alpha layout
        with pytest.raises(ValueError):
            numpy_to_cv2(arr)
        return
    cv = numpy_to_cv2(arr)
    assert cv.dtype == np.float32 and np.array_equal(cv2_to_numpy(cv), arr)


def test_opencv_agrees_with_imencode_on_real_photo() -> None:
    """What we hand OpenCV is what OpenCV expects: encoding it and decoding with Pillow gives the same pixels."""
    photo = S.sample_images()["chelsea"]
    ok, png = cv2.imencode(".png", pil_to_cv2(Image.fromarray(photo)))
    assert ok
    from ai_service.imaging.io import decode_image

    assert np.array_equal(np.asarray(decode_image(png.tobytes())), photo)
    back = cv2.imdecode(np.frombuffer(S.encode(photo, "PNG"), np.uint8), cv2.IMREAD_UNCHANGED)
    assert np.array_equal(np.asarray(cv2_to_pil(back)), photo)


def test_grey_and_la_through_opencv() -> None:
    grey = S.sample_images()["camera"]
    assert np.array_equal(pil_to_cv2(Image.fromarray(grey)), grey)
    assert cv2_to_pil(grey).mode == "L"
    la = Image.fromarray(np.dstack([grey, grey]), "LA")
    assert pil_to_cv2(la).shape[2] == 4
    with pytest.raises(ValueError):
        numpy_to_cv2(np.zeros((2, 2, 2), np.uint8))


@pytest.mark.parametrize("device", DEVICES)
def test_tensor_device_and_dtypes(device: str) -> None:
    arr = S.photo_rgba()
    t = pil_to_tensor(Image.fromarray(arr), device=device, dtype=torch.float16)
    assert t.device.type == device and t.dtype == torch.float16 and t.shape[0] == 4
    assert np.abs(tensor_to_numpy(t).astype(int) - arr).max() <= 1  # float16 has 11 significant bits
    t64 = numpy_to_tensor(arr, device=device, dtype=torch.float64)
    assert np.array_equal(tensor_to_numpy(t64), arr)
    with pytest.raises(TypeError):
        numpy_to_tensor(arr.astype(np.int32))
    with pytest.raises(TypeError):
        numpy_to_tensor(arr, dtype=torch.int32)


def test_tensor_does_not_alias_pil_memory() -> None:
    im = Image.new("L", (4, 4), 7)
    t = pil_to_tensor(im, dtype=torch.uint8)
    t.fill_(1)
    assert im.getpixel((0, 0)) == 7


def test_batches() -> None:
    photos = [Image.fromarray(S.random_rgb(8, 10, seed=i)) for i in range(3)]
    batch = pils_to_batch(photos)
    assert batch.shape == (3, 3, 8, 10) and batch.dtype == torch.float32
    assert all(np.array_equal(np.asarray(a), np.asarray(b)) for a, b in zip(batch_to_pils(batch), photos))
    assert pils_to_batch(photos, dtype=torch.uint8).dtype == torch.uint8
    with pytest.raises(ValueError):
        pils_to_batch([photos[0], Image.new("RGB", (3, 3))])
    with pytest.raises(ValueError):
        tensor_to_numpy(batch)


def test_float_values_are_rounded_and_clipped() -> None:
    t = torch.tensor([[[-0.2, 0.5, 1.3, 0.00196, 0.00197]]])
    assert tensor_to_numpy(t)[0, :, 0].tolist() == [0, 128, 255, 0, 1]
    assert np.array_equal(np.asarray(numpy_to_pil(np.array([[0.0, 1.0]]))), [[0, 255]])
    assert np.array_equal(np.asarray(numpy_to_pil(np.array([[True, False]]))), [[255, 0]])


# ---------------------------------------------------------------- grey


def test_bt601_grey_matches_opencv_and_pillow() -> None:
    for name, photo in [("random", S.random_rgb(64, 64)), *S.sample_rgb()]:
        ours = np.asarray(to_gray(Image.fromarray(photo)))
        assert np.array_equal(ours, cv2.cvtColor(photo, cv2.COLOR_RGB2GRAY)), name
        assert np.abs(ours.astype(int) - np.asarray(Image.fromarray(photo).convert("L"))).max() <= 1, name


def test_bt709_grey_weights() -> None:
    photo = S.sample_images()["astronaut"]
    ours = np.asarray(to_gray(Image.fromarray(photo), "bt709")).astype(int)
    ref = np.rint(photo @ np.array([0.2126, 0.7152, 0.0722]))
    assert np.abs(ours - ref).max() <= 1
    assert not np.array_equal(ours, np.asarray(to_gray(Image.fromarray(photo))))
    # the fixed-point matches OpenCV's transform with the same weights
    cv_ref = cv2.transform(photo, np.array([[0.2126, 0.7152, 0.0722]], np.float32))
    assert np.abs(ours - cv_ref.astype(int)).max() <= 1
    with pytest.raises(ValueError):
        gray_from_rgb_array(photo, "bt2020")  # type: ignore[arg-type]


def test_rgba_grey_rgba() -> None:
    rgba = S.photo_rgba()
    la = to_gray(Image.fromarray(rgba))
    assert la.mode == "LA" and np.array_equal(np.asarray(la)[..., 1], rgba[..., 3])
    assert to_gray(Image.fromarray(rgba), keep_alpha=False).mode == "L"
    back = gray_to_rgba(la)
    arr = np.asarray(back)
    assert back.mode == "RGBA" and np.array_equal(arr[..., 0], arr[..., 2]) and np.array_equal(arr[..., 3], rgba[..., 3])
    assert np.asarray(gray_to_rgba(Image.new("L", (2, 2), 9), alpha=100))[0, 0].tolist() == [9, 9, 9, 100]
    with pytest.raises(ValueError):
        gray_to_rgba(Image.new("RGB", (2, 2)))


def test_grey_tensor_matches_array_version() -> None:
    photo = S.sample_images()["coffee"]
    t = pil_to_tensor(Image.fromarray(photo)).unsqueeze(0)
    for weights in ("bt601", "bt709"):
        g = gray_tensor(t, weights)  # type: ignore[arg-type]
        assert g.shape == (1, 1, *photo.shape[:2])
        ref = gray_from_rgb_array(photo, weights)  # type: ignore[arg-type]
        assert np.abs(tensor_to_numpy(g[0]).astype(int)[..., 0] - ref).max() <= 1


# ---------------------------------------------------------------- JSON


class Colour(enum.Enum):
    RED = "red"


def test_json_encoder_handles_image_types() -> None:
    payload = {
        "i": np.int64(3),
        "f": np.float32(0.5),
        "nan": np.float32("nan"),
        "b": np.bool_(True),
        "arr": np.arange(4, dtype=np.uint8).reshape(2, 2),
        "t": torch.tensor([[1.5, 2.0]]),
        "scalar_t": torch.tensor(7),
        "when": dt.datetime(2024, 1, 2, 3, 4, 5, tzinfo=dt.timezone.utc),
        "day": dt.date(2024, 1, 2),
        "path": Path("/tmp/x.png"),
        "set": {3, 1, 2},
        "mixed": {1, "a"},
        "enum": Colour.RED,
        "raw": b"\x00\x01",
    }
    out = json.loads(dumps(payload))
    assert out["i"] == 3 and out["f"] == 0.5 and out["nan"] is None and out["b"] is True
    assert out["arr"] == [[0, 1], [2, 3]] and out["t"] == [[1.5, 2.0]] and out["scalar_t"] == 7
    assert out["when"] == "2024-01-02T03:04:05+00:00" and out["day"] == "2024-01-02"
    assert out["path"] == "/tmp/x.png" and out["set"] == [1, 2, 3] and sorted(map(str, out["mixed"])) == ["1", "a"]
    assert out["enum"] == "red" and out["raw"] == "AAE="
    assert json.loads(json.dumps({"x": np.float64(1.25)}, cls=ImagingJSONEncoder)) == {"x": 1.25}
    with pytest.raises(TypeError):
        json_default(object())
    assert math.isclose(json.loads(dumps(np.float16(0.25))), 0.25)


def test_flask_json_provider() -> None:
    from flask import Flask

    app = Flask(__name__)
    app.json = flask_json_provider()(app)
    with app.app_context():
        body = app.json.dumps({"a": np.int32(1), "p": Path("x"), "t": torch.zeros(2)})
    assert json.loads(body) == {"a": 1, "p": "x", "t": [0.0, 0.0]}
