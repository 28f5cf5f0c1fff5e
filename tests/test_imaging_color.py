"""Color spaces: the NumPy/PIL path is OpenCV's (random + scikit-image photos) and agrees with scikit-image."""

from __future__ import annotations

import cv2
import imaging_samples as S
import numpy as np
import pytest
from PIL import Image

from ai_service.imaging.color import color_image, convert_color

TO_CV = {
    "hsv": cv2.COLOR_RGB2HSV,
    "hls": cv2.COLOR_RGB2HLS,
    "lab": cv2.COLOR_RGB2Lab,
    "ycrcb": cv2.COLOR_RGB2YCrCb,
    "yuv": cv2.COLOR_RGB2YUV,
    "gray": cv2.COLOR_RGB2GRAY,
}


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
        chroma = photo.max(-1).astype(int) - photo.min(-1) > 8  # hue is ill-conditioned for near-grays
        assert dh[chroma].max() <= 1.0, name
        assert np.abs(hsv[..., 1:] - ref[..., 1:] * 255.0).max() <= 1.0, name
        lab = convert_color(photo, "rgb", "lab").astype(np.float64)
        sk_lab = skc.rgb2lab(photo)
        sk8 = np.dstack([sk_lab[..., 0] * 255 / 100, sk_lab[..., 1] + 128, sk_lab[..., 2] + 128])
        assert np.abs(lab - sk8).max() <= 2.5, name
        ycc = convert_color(photo, "rgb", "ycrcb").astype(np.float64)
        assert np.abs(ycc[..., 0] - photo @ np.array([0.299, 0.587, 0.114])).max() <= 1, name
