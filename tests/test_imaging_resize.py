"""Resizing: tensors vs Pillow (1-2 LSB), alpha-aware paths, fit modes and their geometry."""
from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

import imaging_samples as S
from imaging_samples import torch_single_thread  # noqa: F401  (fixture)
from ai_service.imaging.convert import pil_to_tensor, tensor_to_numpy
from ai_service.imaging.resize import (
    FILTERS,
    PIL_FILTERS,
    FitGeometry,
    fit_image,
    fit_tensor,
    plan_fit,
    resample_matrix,
    resize_image,
    resize_tensor,
)

SIZES = [(224, 224), (100, 333), (700, 900), (37, 1000)]
DEVICES = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])

pytestmark = pytest.mark.usefixtures("torch_single_thread")


def diff(a: np.ndarray, b: np.ndarray) -> int:
    return int(np.abs(a.astype(np.int32) - b.astype(np.int32)).max())


@pytest.mark.parametrize("filt", FILTERS)
def test_tensor_resize_within_2_lsb_of_pillow_on_photos(filt: str) -> None:
    photos = [S.sample_images()["astronaut"], S.random_rgb(97, 131)]
    for photo in photos:
        im = Image.fromarray(photo)
        batch = torch.stack([pil_to_tensor(im, dtype=torch.uint8)] * 2)
        for size in SIZES:
            ref = np.asarray(im.resize(size, PIL_FILTERS[filt]))
            out_u8 = resize_tensor(batch, size, filt)  # type: ignore[arg-type]
            assert out_u8.shape == (2, 3, size[1], size[0]) and out_u8.dtype == torch.uint8
            assert diff(out_u8[1].permute(1, 2, 0).numpy(), ref) <= 2, (filt, size)
            out_f = resize_tensor(pil_to_tensor(im), size, filt)  # type: ignore[arg-type]
            assert out_f.dtype == torch.float32
            assert diff(tensor_to_numpy(out_f), ref) <= 2, (filt, size)


def test_nearest_is_exactly_pillows() -> None:
    photo = S.sample_images()["coffee"]
    for size in [(224, 224), (511, 300), (1000, 777)]:
        ref = np.asarray(Image.fromarray(photo).resize(size, Image.Resampling.NEAREST))
        out = resize_tensor(torch.from_numpy(photo).permute(2, 0, 1), size, "nearest")
        assert np.array_equal(out.permute(1, 2, 0).numpy(), ref)


def test_grey_and_rgba_tensors_against_pillow() -> None:
    grey = S.sample_images()["camera"]
    ref = np.asarray(Image.fromarray(grey).resize((128, 96), Image.Resampling.LANCZOS))
    out = resize_tensor(torch.from_numpy(grey)[None], (128, 96), "lanczos")
    assert diff(out[0].numpy(), ref) <= 2
    rgba = S.photo_rgba()
    ours = resize_tensor(pil_to_tensor(Image.fromarray(rgba), dtype=torch.uint8), (150, 100), "bicubic")
    ref_rgba = np.asarray(resize_image(Image.fromarray(rgba), (150, 100), "bicubic"))
    got = ours.permute(1, 2, 0).numpy()
    assert diff(got[..., 3], ref_rgba[..., 3]) <= 2
    opaque = got[..., 3] > 32  # colour of nearly transparent pixels is ill-defined
    assert diff(got[..., :3][opaque], ref_rgba[..., :3][opaque]) <= 3


def test_resample_matrix_rows_sum_to_one() -> None:
    for filt in ("bilinear", "bicubic", "lanczos", "area"):
        for n_in, n_out in [(100, 7), (7, 100), (64, 64), (3, 1)]:
            m = resample_matrix(n_in, n_out, filt)
            assert m.shape == (n_out, n_in) and np.allclose(m.sum(axis=1), 1.0)


@pytest.mark.parametrize("device", DEVICES)
def test_tensor_resize_device_float_ranges(device: str) -> None:
    t = torch.rand(2, 3, 50, 60, device=device)
    out = resize_tensor(t, (20, 30), "lanczos")
    assert out.device.type == device and out.shape == (2, 3, 30, 20)
    assert float(out.min()) >= 0.0 and float(out.max()) <= 1.0
    norm = (t - 0.5) / 0.2
    free = resize_tensor(norm, (20, 30), "lanczos", clamp=None)
    assert float(free.min()) < 0.0  # normalised tensors keep their range
    assert resize_tensor(t, (60, 50), "bilinear").allclose(t, atol=1e-6)  # same size is identity
    with pytest.raises(ValueError):
        resize_tensor(t, (0, 10))
    with pytest.raises(ValueError):
        resize_tensor(t, (10, 10), "hamming")  # type: ignore[arg-type]
    with pytest.raises(TypeError):
        resize_tensor(t.to(torch.int32), (10, 10))


def test_antialias_off_aliases() -> None:
    """Downscaling noise 8x: antialiased filters average it away, point-sampled ones keep its variance."""
    noise = torch.from_numpy(S.random_rgb(256, 256)).permute(2, 0, 1).float() / 255.0
    for filt in ("bilinear", "bicubic", "lanczos"):
        smooth = resize_tensor(noise, (32, 32), filt, antialias=True)  # type: ignore[arg-type]
        aliased = resize_tensor(noise, (32, 32), filt, antialias=False)  # type: ignore[arg-type]
        assert float(smooth.std()) < 0.06 < 0.12 < float(aliased.std()), filt
    stripes = np.zeros((64, 64), np.uint8)
    stripes[:, ::2] = 255
    inner = resize_tensor(torch.from_numpy(stripes)[None, None], (8, 8), "bilinear")[..., 1:-1]
    assert int(inner.max()) - int(inner.min()) <= 2 and abs(float(inner.float().mean()) - 127.5) <= 2


@pytest.mark.parametrize("filt", FILTERS)
def test_pil_resize_modes(filt: str) -> None:
    for arr in (S.random_rgb(30, 40), S.random_rgba(30, 40), S.random_rgb(30, 40)[..., 0]):
        out = resize_image(Image.fromarray(arr), (17, 11), filt)  # type: ignore[arg-type]
        assert out.size == (17, 11) and out.mode == Image.fromarray(arr).mode
    rgb = Image.fromarray(S.sample_images()["rocket"])
    assert np.array_equal(np.asarray(resize_image(rgb, (100, 80), filt)), np.asarray(rgb.resize((100, 80), PIL_FILTERS[filt])))  # type: ignore[arg-type]


# ---------------------------------------------------------------- fit modes


def test_plan_fit_letterbox_geometry() -> None:
    geo = plan_fit((400, 200), (224, 224), "letterbox")
    assert geo.content_box == (0, 56, 224, 168) and geo.padding == (0, 56, 0, 56)
    assert geo.scale_x == pytest.approx(0.56) and geo.scale_y == pytest.approx(0.56)
    assert geo.to_source(0, 56) == (0.0, 0.0) and geo.to_source(224, 168) == pytest.approx((400.0, 200.0))
    assert geo.box_to_source((0, 0, 224, 224)) == pytest.approx((0.0, 0.0, 400.0, 200.0))  # padding clipped
    assert geo.to_dest(*geo.to_source(100, 100)) == pytest.approx((100, 100))
    d = geo.to_dict()
    assert d["padding"] == (0, 56, 0, 56) and d["mode"] == "letterbox"


def test_plan_fit_crop_and_stretch() -> None:
    crop = plan_fit((400, 200), (100, 100), "crop")
    assert crop.crop_box == (100.0, 0.0, 300.0, 200.0) and crop.scale_x == 0.5
    assert crop.box_to_source((0, 0, 100, 100)) == (100.0, 0.0, 300.0, 200.0)
    stretch = plan_fit((400, 200), (100, 100), "stretch")
    assert stretch.box_to_source((10, 10, 20, 20)) == (40.0, 20.0, 80.0, 40.0)
    with pytest.raises(ValueError):
        plan_fit((4, 4), (2, 2), "zoom")  # type: ignore[arg-type]


def test_fit_image_letterbox_pads_with_colour_or_transparency() -> None:
    im = Image.fromarray(S.sample_images()["chelsea"])  # 451x300
    out, geo = fit_image(im, (224, 224), "letterbox", "bilinear", pad_color=(114, 114, 114))
    assert out.size == (224, 224) and out.mode == "RGB"
    l, t, r, b = geo.content_box
    assert (l, r) == (0, 224) and t > 0 and out.getpixel((5, 0)) == (114, 114, 114) and out.getpixel((5, 223)) == (114, 114, 114)
    ref = im.resize((r - l, b - t), Image.Resampling.BILINEAR)
    assert np.array_equal(np.asarray(out)[t:b, l:r], np.asarray(ref))
    clear, _ = fit_image(im, (224, 224), "letterbox", pad_color=None)
    assert clear.mode == "RGBA" and clear.getpixel((5, 0))[3] == 0 and clear.getpixel((112, 112))[3] == 255
    grey, _ = fit_image(im.convert("L"), (50, 100), "letterbox", pad_color=0)
    assert grey.mode == "L" and grey.size == (50, 100)


def test_fit_image_crop_matches_crop_then_resize() -> None:
    im = Image.fromarray(S.sample_images()["astronaut"])  # 512x512
    out, geo = fit_image(im, (200, 100), "crop", "lanczos")
    assert out.size == (200, 100) and geo.crop_box == (0.0, 128.0, 512.0, 384.0)
    ref = im.resize((200, 100), Image.Resampling.LANCZOS, box=(0, 128, 512, 384))
    assert np.array_equal(np.asarray(out), np.asarray(ref))
    cropped = np.asarray(im.crop((0, 128, 512, 384)).resize((200, 100), Image.Resampling.LANCZOS))
    assert diff(np.asarray(out)[3:-3], cropped[3:-3]) <= 2  # same content; edges differ only by kernel support
    stretched, geo2 = fit_image(im, (64, 32), "stretch")
    assert stretched.size == (64, 32) and isinstance(geo2, FitGeometry)


def test_boxes_map_back_to_the_original() -> None:
    """A feature drawn at a known place is found at that place after letterbox + mapping back."""
    arr = np.zeros((300, 600, 3), np.uint8)
    arr[100:200, 400:500] = 255
    out, geo = fit_image(Image.fromarray(arr), (256, 256), "letterbox", "nearest")
    ys, xs = np.nonzero(np.asarray(out)[..., 0])
    box = geo.box_to_source((xs.min(), ys.min(), xs.max() + 1, ys.max() + 1))
    assert box == pytest.approx((400, 100, 500, 200), abs=3)


def test_fit_tensor_matches_fit_image() -> None:
    im = Image.fromarray(S.sample_images()["chelsea"])
    t = pil_to_tensor(im, dtype=torch.uint8)
    for mode in ("stretch", "letterbox", "crop"):
        ours, geo = fit_tensor(t, (160, 160), mode, "bilinear", pad_value=114)  # type: ignore[arg-type]
        ref, ref_geo = fit_image(im, (160, 160), mode, "bilinear", pad_color=(114, 114, 114))  # type: ignore[arg-type]
        assert ours.shape == (3, 160, 160) and geo.content_box == ref_geo.content_box
        tol = 2 if mode != "crop" else 40  # crop snaps to whole pixels for tensors
        assert diff(ours.permute(1, 2, 0).numpy(), np.asarray(ref)) <= tol, mode
    batch, _ = fit_tensor(torch.rand(3, 3, 40, 80), (32, 32), "letterbox", pad_value=(0.0, 0.5, 1.0))
    assert batch.shape == (3, 3, 32, 32) and float(batch[0, 2, 0, 0]) == 1.0 and float(batch[0, 1, 0, 0]) == 0.5


def test_geometry_for_full_size_source() -> None:
    small = plan_fit((300, 200), (150, 150), "crop")
    full = small.for_source((2400, 1600))
    assert full.src_size == (2400, 1600) and full.crop_box == pytest.approx((400.0, 0.0, 2000.0, 1600.0))
    assert full.box_to_source((0, 0, 150, 150)) == pytest.approx((400.0, 0.0, 2000.0, 1600.0))
    assert full.to_dest(*full.to_source(37, 81)) == pytest.approx((37, 81))


@pytest.mark.parametrize("src", [(101, 37), (37, 101), (5, 5), (640, 479)])
@pytest.mark.parametrize("dst", [(3, 7), (224, 224), (50, 13)])
def test_fit_tensor_crop_stays_inside(src: tuple[int, int], dst: tuple[int, int]) -> None:
    t = torch.rand(3, src[1], src[0])
    out, geo = fit_tensor(t, dst, "crop")
    assert out.shape == (3, dst[1], dst[0])
    x0, y0, x1, y1 = geo.crop_box
    assert 0 <= x0 < x1 <= src[0] and 0 <= y0 < y1 <= src[1]
