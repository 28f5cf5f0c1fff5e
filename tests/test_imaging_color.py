"""Colour spaces: tensors vs OpenCV within 1 LSB (random + scikit-image photos), NumPy path vs scikit-image."""
from __future__ import annotations

import cv2
import numpy as np
import pytest
import torch
from PIL import Image

import imaging_samples as S
from imaging_samples import torch_single_thread  # noqa: F401  (fixture)
from ai_service.imaging.color import (
    SPACES,
    color_image,
    convert_color,
    convert_color_tensor,
    from_8bit,
    to_8bit,
)

TO_CV = {"hsv": cv2.COLOR_RGB2HSV, "hls": cv2.COLOR_RGB2HLS, "lab": cv2.COLOR_RGB2Lab,
         "ycrcb": cv2.COLOR_RGB2YCrCb, "yuv": cv2.COLOR_RGB2YUV, "gray": cv2.COLOR_RGB2GRAY}
FROM_CV = {"hsv": cv2.COLOR_HSV2RGB, "hls": cv2.COLOR_HLS2RGB, "lab": cv2.COLOR_Lab2RGB,
           "ycrcb": cv2.COLOR_YCrCb2RGB, "yuv": cv2.COLOR_YUV2RGB}
DEVICES = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])

pytestmark = pytest.mark.usefixtures("torch_single_thread")


def photos() -> list[tuple[str, np.ndarray]]:
    """Random pixels, a 33-level RGB cube (0, 8, ..., 248, 255 per channel) and the real photos."""
    levels = np.append(np.arange(0, 256, 8, dtype=np.uint8), np.uint8(255))
    cube = np.stack(np.meshgrid(levels, levels, levels, indexing="ij"), -1).reshape(33 * 33, 33, 3)
    photos_ = S.sample_images()
    return [("random", S.random_rgb(128, 128)), ("cube", cube), ("astronaut", photos_["astronaut"]), ("coffee", photos_["coffee"])]


def lsb_error(ours: np.ndarray, ref: np.ndarray, space: str) -> int:
    """Largest difference, hue measured around the circle (0 and 179 are neighbours)."""
    d = np.abs(ours.astype(np.int32) - ref.astype(np.int32))
    if space in ("hsv", "hls"):
        d[..., 0] = np.minimum(d[..., 0], 180 - d[..., 0])
    return int(d.max())


@pytest.mark.parametrize("space", [s for s in SPACES if s != "rgb"])
def test_tensor_forward_within_1_lsb_of_opencv(space: str) -> None:
    for name, photo in photos():
        ref = cv2.cvtColor(photo, TO_CV[space])
        ref = ref[..., None] if ref.ndim == 2 else ref
        batch = torch.from_numpy(photo).permute(2, 0, 1).unsqueeze(0)
        for t in (batch, batch.float() / 255.0):  # uint8 and float inputs
            out = convert_color_tensor(t, "rgb", space, scale="8bit")  # type: ignore[arg-type]
            assert out.shape[0] == 1
            ours = out[0].round().clamp(0, 255).to(torch.uint8).permute(1, 2, 0).numpy()
            tol = 2 if (space == "lab" and t.is_floating_point()) else 1
            assert lsb_error(ours, ref, space) <= tol, (space, name, t.dtype)


@pytest.mark.parametrize("space", ["hsv", "hls", "lab", "ycrcb", "yuv"])
def test_tensor_inverse_within_1_lsb_of_opencv(space: str) -> None:
    for name, photo in photos():
        encoded = cv2.cvtColor(photo, TO_CV[space])
        ref = cv2.cvtColor(encoded, FROM_CV[space])
        t = torch.from_numpy(encoded).permute(2, 0, 1).float()
        back = convert_color_tensor(t, space, "rgb", scale="8bit")  # type: ignore[arg-type]
        ours = back.round().clamp(0, 255).to(torch.uint8).permute(1, 2, 0).numpy()
        if space == "lab":  # OpenCV's Lab2RGB_b is a bit-exact integer pipeline; we are float
            off = np.abs(ours.astype(int) - ref).max(-1) > 1
            assert lsb_error(ours, ref, "rgb") <= 2 and off.mean() < 1e-3, (space, name)
        else:
            assert lsb_error(ours, ref, "rgb") <= 1, (space, name)


@pytest.mark.parametrize("space", ["hsv", "hls", "ycrcb", "yuv", "lab"])
def test_tensor_float_matches_opencv_float32(space: str) -> None:
    photo = S.sample_images()["astronaut"].astype(np.float32) / 255.0
    ref = cv2.cvtColor(photo, TO_CV[space])
    ours = convert_color_tensor(torch.from_numpy(photo).permute(2, 0, 1), "rgb", space).permute(1, 2, 0).numpy()  # type: ignore[arg-type]
    d = np.abs(ours - ref)
    if space in ("hsv", "hls"):
        d[..., 0] = np.minimum(d[..., 0], 360 - d[..., 0])
        assert d[..., 0].max() < 0.05 and d[..., 1:].max() < 1e-4
    elif space == "lab":
        assert d.max() < 0.5 and d.mean() < 0.1  # OpenCV's float LAB uses spline-interpolated tables
    else:
        assert d.max() < 1e-4


@pytest.mark.parametrize("space", ["hsv", "hls", "lab", "ycrcb", "yuv", "gray"])
def test_tensor_round_trip_float(space: str) -> None:
    t = torch.rand(4, 3, 16, 16, dtype=torch.float64)
    if space == "gray":
        t = t[:, :1].expand(-1, 3, -1, -1)
    back = convert_color_tensor(convert_color_tensor(t, "rgb", space), space, "rgb")  # type: ignore[arg-type]
    # OpenCV publishes its forward/inverse YCrCb, YUV and XYZ matrices rounded, so those pairs are inverse to ~1e-4
    assert torch.allclose(back, t, atol=1e-6 if space in ("hsv", "hls", "gray") else 1e-3)


@pytest.mark.parametrize("device", DEVICES)
def test_tensor_device_batched_and_8bit_helpers(device: str) -> None:
    t = torch.rand(2, 5, 3, 8, 8, device=device)
    for space in ("hsv", "lab"):
        out = convert_color_tensor(t, "rgb", space)  # type: ignore[arg-type]
        assert out.shape == t.shape and out.device.type == device
        assert torch.allclose(from_8bit(to_8bit(out, space), space), out, atol=1e-4)  # type: ignore[arg-type]
    u8 = (t * 255).to(torch.uint8)
    assert convert_color_tensor(u8, "rgb", "lab", scale="8bit").device.type == device
    with pytest.raises(ValueError):
        convert_color_tensor(t, "rgb", "cmyk")  # type: ignore[arg-type]
    with pytest.raises(ValueError):
        convert_color_tensor(t[:, :, :2], "rgb", "hsv")


def test_numpy_path_is_opencv_and_accepts_pil() -> None:
    photo = S.sample_images()["coffee"]
    for space in ("hsv", "hls", "lab", "ycrcb", "yuv", "gray"):
        assert np.array_equal(convert_color(photo, "rgb", space), cv2.cvtColor(photo, TO_CV[space]))  # type: ignore[arg-type]
        assert np.array_equal(convert_color(Image.fromarray(photo), "rgb", space), cv2.cvtColor(photo, TO_CV[space]))  # type: ignore[arg-type]
    rgba = Image.fromarray(S.photo_rgba("coffee"))
    assert convert_color(rgba, "rgb", "hsv").shape == photo.shape
    hsv = convert_color(photo, "rgb", "hsv")
    assert np.abs(convert_color(hsv, "hsv", "rgb").astype(int) - photo).max() <= 6  # 8-bit HSV is lossy (H step 2 deg)
    assert convert_color(hsv, "hsv", "lab").shape == photo.shape
    assert color_image(Image.fromarray(photo), "lab").mode == "RGB"
    assert color_image(Image.fromarray(photo), "gray").mode == "L"
    assert np.array_equal(convert_color(photo, "rgb", "rgb"), photo)
    with pytest.raises(ValueError):
        convert_color(photo, "rgb", "xyz")  # type: ignore[arg-type]


def test_numpy_path_against_scikit_image() -> None:
    """An independent reference: scikit-image's float conversions, rescaled to OpenCV's 8-bit ranges."""
    from skimage import color as skc

    for name, photo in S.sample_rgb():
        hsv = convert_color(photo, "rgb", "hsv").astype(np.float64)
        ref = skc.rgb2hsv(photo)
        dh = np.abs(hsv[..., 0] - ref[..., 0] * 180.0)
        dh = np.minimum(dh, 180.0 - dh)
        chroma = photo.max(-1).astype(int) - photo.min(-1) > 8  # hue is ill-conditioned for near-greys
        assert dh[chroma].max() <= 1.0, name
        assert np.abs(hsv[..., 1:] - ref[..., 1:] * 255.0).max() <= 1.0, name
        lab = convert_color(photo, "rgb", "lab").astype(np.float64)
        sk_lab = skc.rgb2lab(photo)
        sk8 = np.dstack([sk_lab[..., 0] * 255 / 100, sk_lab[..., 1] + 128, sk_lab[..., 2] + 128])
        assert np.abs(lab - sk8).max() <= 2.5, name
        ycc = convert_color(photo, "rgb", "ycrcb").astype(np.float64)
        assert np.abs(ycc[..., 0] - photo @ np.array([0.299, 0.587, 0.114])).max() <= 1, name
