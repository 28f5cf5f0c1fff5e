"""Resizing: Pillow's filters, alpha-aware paths, fit modes and their geometry."""

from __future__ import annotations

import imaging_samples as S
import numpy as np
import pytest
from PIL import Image

from ai_service.imaging.geometry import Geometry
from ai_service.imaging.resize import (
    FILTERS,
    PIL_FILTERS,
    fit_image,
    plan_fit,
    resize_image,
)


def diff(a: np.ndarray, b: np.ndarray) -> int:
    return int(np.abs(a.astype(np.int32) - b.astype(np.int32)).max())


@pytest.mark.parametrize("filt", FILTERS)
def test_pil_resize_modes(filt: str) -> None:
    for arr in (S.random_rgb(30, 40), S.random_rgba(30, 40), S.random_rgb(30, 40)[..., 0]):
        out = resize_image(Image.fromarray(arr), (17, 11), filt)  # type: ignore[arg-type]
        assert out.size == (17, 11) and out.mode == Image.fromarray(arr).mode
    rgb = Image.fromarray(S.sample_images()["rocket"])
    assert np.array_equal(
        np.asarray(resize_image(rgb, (100, 80), filt)), np.asarray(rgb.resize((100, 80), PIL_FILTERS[filt]))
    )  # type: ignore[arg-type]


# ---------------------------------------------------------------- fit modes


def test_plan_fit_letterbox_geometry() -> None:
    geo = plan_fit((400, 200), (224, 224), "letterbox")
    assert geo.content == (0, 56, 224, 168) and geo.padding == (0, 56, 0, 56)
    assert geo.scale == pytest.approx((0.56, 0.56))
    assert geo.to_original(0, 56) == (0.0, 0.0) and geo.to_original(224, 168) == pytest.approx((400.0, 200.0))
    assert geo.box_to_original((0, 0, 224, 224)) == pytest.approx((0.0, 0.0, 400.0, 200.0))  # padding clipped
    assert geo.to_input(*geo.to_original(100, 100)) == pytest.approx((100, 100))
    d = geo.as_convert_json()
    assert d["padding"] == [0, 56, 0, 56] and d["mode"] == "letterbox"


def test_plan_fit_crop_and_stretch() -> None:
    crop = plan_fit((400, 200), (100, 100), "crop")
    assert crop.crop == (100.0, 0.0, 300.0, 200.0) and crop.scale[0] == 0.5
    assert crop.box_to_original((0, 0, 100, 100)) == [100.0, 0.0, 300.0, 200.0]
    stretch = plan_fit((400, 200), (100, 100), "stretch")
    assert stretch.box_to_original((10, 10, 20, 20)) == [40.0, 20.0, 80.0, 40.0]
    with pytest.raises(ValueError):
        plan_fit((4, 4), (2, 2), "zoom")  # type: ignore[arg-type]


def test_fit_image_letterbox_pads_with_color_or_transparency() -> None:
    im = Image.fromarray(S.sample_images()["chelsea"])  # 451x300
    out, geo = fit_image(im, (224, 224), "letterbox", "bilinear", pad_color=(114, 114, 114))
    assert out.size == (224, 224) and out.mode == "RGB"
    left, top, right, bottom = geo.content
    assert (
        (left, right) == (0, 224)
        and top > 0
        and out.getpixel((5, 0)) == (114, 114, 114)
        and out.getpixel((5, 223)) == (114, 114, 114)
    )
    ref = im.resize((right - left, bottom - top), Image.Resampling.BILINEAR)
    assert np.array_equal(np.asarray(out)[top:bottom, left:right], np.asarray(ref))
    clear, _ = fit_image(im, (224, 224), "letterbox", pad_color=None)
    assert clear.mode == "RGBA" and clear.getpixel((5, 0))[3] == 0 and clear.getpixel((112, 112))[3] == 255
    gray, _ = fit_image(im.convert("L"), (50, 100), "letterbox", pad_color=0)
    assert gray.mode == "L" and gray.size == (50, 100)


def test_fit_image_crop_matches_crop_then_resize() -> None:
    im = Image.fromarray(S.sample_images()["astronaut"])  # 512x512
    out, geo = fit_image(im, (200, 100), "crop", "lanczos")
    assert out.size == (200, 100) and geo.crop == (0.0, 128.0, 512.0, 384.0) and geo.resample == "lanczos"
    ref = im.resize((200, 100), Image.Resampling.LANCZOS, box=(0, 128, 512, 384))
    assert np.array_equal(np.asarray(out), np.asarray(ref))
    cropped = np.asarray(im.crop((0, 128, 512, 384)).resize((200, 100), Image.Resampling.LANCZOS))
    assert diff(np.asarray(out)[3:-3], cropped[3:-3]) <= 2  # same content; edges differ only by kernel support
    stretched, geo2 = fit_image(im, (64, 32), "stretch")
    assert stretched.size == (64, 32) and isinstance(geo2, Geometry)


def test_boxes_map_back_to_the_original() -> None:
    """A feature drawn at a known place is found at that place after letterbox + mapping back."""
    arr = np.zeros((300, 600, 3), np.uint8)
    arr[100:200, 400:500] = 255
    out, geo = fit_image(Image.fromarray(arr), (256, 256), "letterbox", "nearest")
    ys, xs = np.nonzero(np.asarray(out)[..., 0])
    box = geo.box_to_original((xs.min(), ys.min(), xs.max() + 1, ys.max() + 1))
    assert box == pytest.approx((400, 100, 500, 200), abs=3)


def test_geometry_for_full_size_source() -> None:
    small = plan_fit((300, 200), (150, 150), "crop")
    full = small.rebase((2400, 1600))
    assert full.original_size == (2400, 1600) and full.crop == pytest.approx((400.0, 0.0, 2000.0, 1600.0))
    assert full.decoded_size == (300, 200)
    assert full.box_to_original((0, 0, 150, 150)) == pytest.approx((400.0, 0.0, 2000.0, 1600.0))
    assert full.to_input(*full.to_original(37, 81)) == pytest.approx((37, 81))
