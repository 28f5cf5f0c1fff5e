"""Transparency helpers against Pillow / straightforward NumPy references, on generated and real images."""

from __future__ import annotations

import imaging_samples as S
import numpy as np
import pytest
from PIL import Image

from ai_service.imaging.alpha import (
    color_key,
    color_key_alpha,
    flatten_alpha,
    has_alpha,
    is_transparent,
    parse_color,
    premultiply,
    reattach_alpha,
    split_alpha,
    unpremultiply,
)
from ai_service.imaging.resize import resize_image


def test_has_alpha_vs_is_transparent() -> None:
    opaque_rgba = Image.new("RGBA", (4, 4), (1, 2, 3, 255))
    assert has_alpha(opaque_rgba) and not is_transparent(opaque_rgba)
    see_through = opaque_rgba.copy()
    see_through.putpixel((1, 1), (1, 2, 3, 254))
    assert has_alpha(see_through) and is_transparent(see_through)
    assert not has_alpha(Image.new("RGB", (2, 2))) and not is_transparent(Image.new("RGB", (2, 2)))
    assert has_alpha(Image.new("LA", (2, 2), (5, 255))) and not is_transparent(Image.new("LA", (2, 2), (5, 255)))


def test_palette_transparency_counts() -> None:
    p = Image.new("P", (2, 1))
    p.putpalette([255, 0, 0, 0, 255, 0] + [0] * 762)
    p.putdata([0, 1])
    p.info["transparency"] = 1
    assert has_alpha(p) and is_transparent(p)
    unused = p.copy()
    unused.putdata([0, 0])
    unused.info["transparency"] = 1
    assert has_alpha(unused) and not is_transparent(unused)  # the transparent index is never used


def test_numpy_alpha_checks() -> None:
    rgba = S.random_rgba()
    assert has_alpha(rgba) and is_transparent(rgba)
    rgba[..., 3] = 255
    assert not is_transparent(rgba)
    assert not has_alpha(S.random_rgb())
    assert is_transparent(np.dstack([np.ones((2, 2, 3)), np.full((2, 2, 1), 0.5)]))


def test_split_alpha() -> None:
    rgba = S.photo_rgba()
    color, alpha = split_alpha(Image.fromarray(rgba))
    assert color.mode == "RGB" and alpha is not None and alpha.mode == "L"
    assert np.array_equal(np.asarray(color), rgba[..., :3]) and np.array_equal(np.asarray(alpha), rgba[..., 3])
    gray, a = split_alpha(Image.fromarray(np.dstack([rgba[..., 0], rgba[..., 3]]), "LA"))
    assert gray.mode == "L" and a is not None
    assert split_alpha(Image.fromarray(rgba[..., :3]))[1] is None


@pytest.mark.parametrize("background", [(255, 255, 255), (0, 0, 0), (12, 200, 77), "#336699"])
def test_flatten_matches_pillow_alpha_composite(background: object) -> None:
    rgba = S.photo_rgba("astronaut")
    bg = parse_color(background)  # type: ignore[arg-type]
    ours = np.asarray(flatten_alpha(Image.fromarray(rgba), background)).astype(int)  # type: ignore[arg-type]
    ref = Image.alpha_composite(Image.new("RGBA", (rgba.shape[1], rgba.shape[0]), (*bg, 255)), Image.fromarray(rgba))
    assert ours.shape == rgba[..., :3].shape
    assert np.abs(ours - np.asarray(ref.convert("RGB")).astype(int)).max() <= 1
    exact = np.rint(rgba[..., :3] * (rgba[..., 3:] / 255.0) + np.asarray(bg) * (1 - rgba[..., 3:] / 255.0))
    assert np.abs(ours - exact).max() <= 1


def test_flatten_default_white_and_gray() -> None:
    im = Image.new("RGBA", (2, 2), (0, 0, 0, 0))
    assert flatten_alpha(im).getpixel((0, 0)) == (255, 255, 255)
    la = Image.new("LA", (2, 2), (0, 128))
    flat = flatten_alpha(la, 255)
    assert flat.mode == "L" and abs(flat.getpixel((0, 0)) - 127) <= 1
    assert flatten_alpha(la, (255, 0, 0)).mode == "RGB"
    rgb = Image.new("RGB", (2, 2), (1, 2, 3))
    assert flatten_alpha(rgb) is rgb


def test_reattach_alpha_after_image_to_image_model() -> None:
    original = Image.fromarray(S.photo_rgba())
    color, alpha = split_alpha(original)
    model_output = color.transpose(Image.Transpose.FLIP_LEFT_RIGHT).transpose(Image.Transpose.FLIP_LEFT_RIGHT)
    restored = reattach_alpha(model_output, original)
    assert restored.mode == "RGBA" and np.array_equal(np.asarray(restored), np.asarray(original))
    upscaled = reattach_alpha(color.resize((color.width * 2, color.height * 2)), original)
    assert upscaled.size == (color.width * 2, color.height * 2)
    assert np.asarray(upscaled)[0, 0, 3] == 0 and np.asarray(upscaled)[color.height, color.width, 3] == 255
    opaque = Image.new("RGB", (3, 3))
    assert reattach_alpha(opaque, Image.new("RGB", (3, 3))) is opaque
    assert reattach_alpha(Image.new("L", (3, 3)), Image.new("LA", (3, 3), (0, 9))).mode == "LA"


def _classic_loop(im: Image.Image, key: tuple[int, int, int], tol: int) -> Image.Image:
    """The per-pixel recipe from blog posts (reference implementation)."""
    out = []
    pixels = im.get_flattened_data() if hasattr(im, "get_flattened_data") else im.getdata()
    for r, g, b, a in pixels:
        if abs(r - key[0]) <= tol and abs(g - key[1]) <= tol and abs(b - key[2]) <= tol:
            out.append((r, g, b, 0))
        else:
            out.append((r, g, b, a))
    res = Image.new("RGBA", im.size)
    res.putdata(out)
    return res


@pytest.mark.parametrize("tol", [0, 10, 60])
def test_color_key_matches_classic_loop(tol: int) -> None:
    arr = S.random_rgba(48, 64, seed=tol)
    arr[::3, ::2, :3] = (250, 250, 250)
    im = Image.fromarray(arr)
    ours = color_key(im, (255, 255, 255), tolerance=tol)
    assert np.array_equal(np.asarray(ours), np.asarray(_classic_loop(im, (255, 255, 255), tol)))


def test_color_key_soft_edge_and_metrics() -> None:
    rgb = np.zeros((1, 6, 3), np.uint8)
    rgb[0, :, 1] = [255, 250, 245, 235, 215, 100]  # distance from pure green: 0, 5, 10, 20, 40, 155
    alpha = color_key_alpha(rgb, (0, 255, 0), tolerance=5, softness=20)
    assert alpha[0].tolist() == [0, 0, 64, 191, 255, 255]
    eu = color_key_alpha(np.array([[[3, 4, 0]]], np.uint8), (0, 0, 0), tolerance=4, metric="euclidean")
    assert eu[0, 0] == 255  # distance 5 > 4
    assert color_key_alpha(np.array([[[3, 4, 0]]], np.uint8), (0, 0, 0), tolerance=3)[0, 0] == 255
    assert color_key_alpha(np.array([[[3, 3, 0]]], np.uint8), (0, 0, 0), tolerance=3)[0, 0] == 0
    with pytest.raises(ValueError):
        color_key_alpha(rgb, (0, 0, 0), metric="manhattan")  # type: ignore[arg-type]


def test_color_key_keeps_existing_alpha_and_real_photo() -> None:
    arr = S.photo_rgba("coffee")
    im = Image.fromarray(arr)
    key = tuple(int(v) for v in arr[200, 300, :3])
    out = np.asarray(color_key(im, key, tolerance=30, softness=10))
    assert np.array_equal(out[..., :3], arr[..., :3])
    assert (out[..., 3] <= arr[..., 3]).all() and out[200, 300, 3] == 0
    d = np.abs(arr[..., :3].astype(int) - np.asarray(key)).max(-1)
    ref = np.minimum(arr[..., 3], np.clip(np.rint((d - 30) * 25.5), 0, 255)).astype(np.uint8)
    assert np.array_equal(out[..., 3], ref)
    assert color_key(Image.fromarray(arr[..., :3]), "white").mode == "RGBA"


def test_parse_color() -> None:
    assert parse_color("#ff0000") == (255, 0, 0)
    assert parse_color("white") == (255, 255, 255)
    assert parse_color([1, 2, 3, 4]) == (1, 2, 3)
    assert parse_color(7) == (7, 7, 7)
    for bad in ("nope", (1, 2), (1, 2, 300), 256):
        with pytest.raises(ValueError):
            parse_color(bad)  # type: ignore[arg-type]


def test_premultiply_round_trip() -> None:
    arr = S.random_rgba()
    arr[..., 3] = np.maximum(arr[..., 3], 1)
    pre = premultiply(arr)
    assert pre.dtype == np.float32 and np.allclose(pre[..., 0], arr[..., 0] / 255 * arr[..., 3] / 255)
    assert np.array_equal(unpremultiply(pre), arr)
    zero = np.zeros((1, 1, 4), np.uint8)
    zero[..., :3] = 200
    assert unpremultiply(premultiply(zero)).tolist() == [[[0, 0, 0, 0]]]


def test_premultiplied_resize_has_no_dark_halo() -> None:
    """A red square on transparent *black*: edges must stay red, not darken toward black."""
    arr = np.zeros((64, 64, 4), np.uint8)
    arr[16:48, 16:48] = (255, 0, 0, 255)
    for filt in ("bilinear", "bicubic", "lanczos", "area"):
        out = np.asarray(resize_image(Image.fromarray(arr), (23, 23), filt))  # type: ignore[arg-type]
        visible = out[..., 3] > 0
        assert visible.any() and (out[..., 3][visible] < 255).any()  # there are soft edge pixels
        assert out[..., 0][visible].min() >= 253, filt
    ours = np.asarray(resize_image(Image.fromarray(arr), (23, 23)))
    naive_red = np.asarray(Image.fromarray(arr[..., 0]).resize((23, 23), Image.Resampling.BILINEAR))
    edge = (ours[..., 3] > 0) & (ours[..., 3] < 255)
    assert naive_red[edge].min() < 200  # straight (non-premultiplied) filtering darkens the edge
    assert ours[..., 0][edge].min() >= 253


def test_color_key_array_matches_pil_version() -> None:
    from ai_service.imaging.alpha import color_key_array

    arr = S.photo_rgba("chelsea")
    key = tuple(int(v) for v in arr[150, 200, :3])
    for metric in ("max", "euclidean"):
        ours = color_key_array(arr, key, 25, 15, metric)  # type: ignore[arg-type]
        assert np.array_equal(ours, np.asarray(color_key(Image.fromarray(arr), key, 25, 15, metric)))  # type: ignore[arg-type]
    rgb_out = color_key_array(arr[..., :3].copy(), key, 25)
    assert rgb_out.shape[2] == 4 and rgb_out[150, 200, 3] == 0
    with pytest.raises(ValueError):
        color_key_array(arr.astype(np.float32))


def test_pillow_fallback_path_matches_opencv_path() -> None:
    """Images too big for a zero-copy view use a Pillow-only implementation; both must agree exactly."""
    from ai_service.imaging.alpha import _color_key_pil, color_key_array

    arr = S.photo_rgba("rocket")
    key = tuple(int(v) for v in arr[100, 100, :3])
    for tol, soft in [(0, 0), (20, 0), (10, 30)]:
        ours = np.asarray(_color_key_pil(Image.fromarray(arr), key, tol, soft))  # type: ignore[arg-type]
        assert np.array_equal(ours, color_key_array(arr, key, tol, soft)), (tol, soft)
    big = Image.new("RGBA", (3000, 2000), (255, 255, 255, 255))  # several Pillow blocks: no zero-copy view
    assert np.asarray(color_key(big, "white"))[..., 3].max() == 0
