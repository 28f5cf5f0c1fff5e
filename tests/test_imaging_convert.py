"""PIL <-> NumPy round trips, PIL batches -> tensors and model tensors -> PIL (hypothesis), and gray weights."""

from __future__ import annotations

import cv2
import imaging_samples as S
import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays
from imaging_samples import torch_single_thread  # noqa: F401  (fixture)
from PIL import Image

from ai_service.imaging.convert import (
    gray_from_rgb_array,
    numpy_to_pil,
    pil_to_numpy,
    pils_to_batch,
    tensor_to_numpy,
    tensor_to_pil,
    to_gray,
    unit_interval_to_uint8,
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
@given(arr=image_arrays, as_uint8=st.booleans())
def test_pil_batch_tensor_round_trip_exact(arr: np.ndarray, as_uint8: bool) -> None:
    im = numpy_to_pil(arr)
    t = pils_to_batch([im], dtype=torch.uint8 if as_uint8 else torch.float32)
    c = arr.shape[2]
    assert tuple(t.shape) == (1, c, arr.shape[0], arr.shape[1])
    assert t.is_contiguous()
    if not as_uint8:
        assert t.dtype == torch.float32 and float(t.min()) >= 0.0 and float(t.max()) <= 1.0
    assert np.array_equal(tensor_to_numpy(t), arr)
    assert np.array_equal(np.asarray(tensor_to_pil(t[0])).reshape(arr.shape), arr)


@settings(max_examples=40, deadline=None)
@given(
    arr=st.integers(1, 4).flatmap(
        lambda c: arrays(
            np.float32, st.tuples(st.integers(1, 8), st.integers(1, 8), st.just(c)), elements=st.floats(0, 1, width=32)
        )
    )
)
def test_float_model_outputs_keep_their_values_or_round_to_bytes(arr: np.ndarray) -> None:
    t = torch.from_numpy(arr).permute(2, 0, 1)
    assert np.array_equal(tensor_to_numpy(t, np.float32), arr)  # exact float round trip
    as_bytes = np.clip(np.rint(arr * 255), 0, 255).astype(np.uint8)
    assert np.array_equal(tensor_to_numpy(t), as_bytes)
    assert np.array_equal(unit_interval_to_uint8(arr), as_bytes)


@pytest.mark.parametrize("device", DEVICES)
def test_batch_device_and_dtypes(device: str) -> None:
    arr = S.photo_rgba()
    t = pils_to_batch([Image.fromarray(arr)], device=device, dtype=torch.float16)
    assert t.device.type == device and t.dtype == torch.float16 and t.shape[1] == 4
    assert np.abs(tensor_to_numpy(t).astype(int) - arr).max() <= 1  # float16 has 11 significant bits
    t64 = pils_to_batch([Image.fromarray(arr)], device=device, dtype=torch.float64)
    assert np.array_equal(tensor_to_numpy(t64), arr)


def test_batch_does_not_alias_pil_memory() -> None:
    im = Image.new("L", (4, 4), 7)
    t = pils_to_batch([im], dtype=torch.uint8)
    t.fill_(1)
    assert im.getpixel((0, 0)) == 7


def test_batches() -> None:
    photos = [Image.fromarray(S.random_rgb(8, 10, seed=i)) for i in range(3)]
    batch = pils_to_batch(photos)
    assert batch.shape == (3, 3, 8, 10) and batch.dtype == torch.float32
    assert all(np.array_equal(np.asarray(a), np.asarray(b)) for a, b in zip(map(tensor_to_pil, batch), photos))
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


# ---------------------------------------------------------------- gray


def test_bt601_gray_matches_opencv_and_pillow() -> None:
    for name, photo in [("random", S.random_rgb(64, 64)), *S.sample_rgb()]:
        ours = np.asarray(to_gray(Image.fromarray(photo)))
        assert np.array_equal(ours, cv2.cvtColor(photo, cv2.COLOR_RGB2GRAY)), name
        assert np.abs(ours.astype(int) - np.asarray(Image.fromarray(photo).convert("L"))).max() <= 1, name


def test_bt709_gray_weights() -> None:
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


def test_rgba_to_gray_keeps_alpha_on_request() -> None:
    rgba = S.photo_rgba()
    la = to_gray(Image.fromarray(rgba))
    assert la.mode == "LA" and np.array_equal(np.asarray(la)[..., 1], rgba[..., 3])
    assert to_gray(Image.fromarray(rgba), keep_alpha=False).mode == "L"
