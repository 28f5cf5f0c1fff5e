"""Decoding: format sniffing, the bad-input corpus, valid edge cases, SVG/PSD, limits and encoding."""

from __future__ import annotations

import io
import time

import imaging_samples as S
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image, ImageCms, ImageOps

from ai_service.imaging import errors
from ai_service.imaging.io import DEFAULT_MAX_PIXELS, decode_image, encode_image, sniff_format
from ai_service.imaging.psd import decode_psd, psd_layers, read_psd_header
from ai_service.imaging.svg import intrinsic_size, parse_svg, rasterize_svg

BAD = S.bad_inputs()


def px(im: Image.Image) -> np.ndarray:
    """Pixels as a signed array for differences."""
    return np.asarray(im).astype(np.int32)


# ---------------------------------------------------------------- sniffing


@pytest.mark.parametrize(
    ("fmt", "pil"),
    [
        ("png", "PNG"),
        ("jpeg", "JPEG"),
        ("webp", "WEBP"),
        ("bmp", "BMP"),
        ("tiff", "TIFF"),
        ("gif", "GIF"),
        ("ico", "ICO"),
    ],
)
def test_sniff_raster_formats(fmt: str, pil: str) -> None:
    assert sniff_format(S.encode(S.random_rgb(16, 16), pil)) == fmt


def test_sniff_psd_and_svg_variants() -> None:
    assert sniff_format(S.psd_flat(S.random_rgb(4, 4))) == "psd"
    assert sniff_format(S.SVG_OK) == "svg"
    assert (
        sniff_format(
            b'\xef\xbb\xbf<?xml version="1.0"?>\n<!-- c -->\n<!DOCTYPE svg PUBLIC "-//W3C//DTD SVG 1.1//EN" "x.dtd">\n<svg/>'  # noqa: E501 (literal test data)
        )
        == "svg"
    )
    assert sniff_format(b'<svg:svg xmlns:svg="http://www.w3.org/2000/svg"/>') == "svg"


def test_sniff_ignores_what_the_name_claims() -> None:
    """A JPEG is a JPEG whatever it is called; text is refused even when named .png."""
    with pytest.raises(errors.UnsupportedFormatError):
        sniff_format(b"just text, named photo.png")
    with pytest.raises(errors.UnsupportedFormatError):
        sniff_format(b"<html><svg></svg></html>")
    with pytest.raises(errors.EmptyImageError):
        sniff_format(b"")


# ---------------------------------------------------------------- bad input corpus


@pytest.fixture(scope="module")
def warm_decoders() -> None:
    """Import the lazily loaded decoders (psd-tools, cairosvg, tifffile) so timings measure decoding only."""
    decode_image(S.psd_flat(S.random_rgb(4, 4)))
    decode_image(S.SVG_OK)
    decode_image(S.skimage_file("multipage_rgb.tif"))


@pytest.mark.filterwarnings("ignore::UserWarning")  # Pillow warns about the damage before we raise
@pytest.mark.parametrize("name", sorted(BAD))
def test_bad_input_raises_specific_error_quickly(name: str, warm_decoders: None) -> None:
    data, expected = BAD[name]
    start = time.perf_counter()
    with pytest.raises(errors.ImageDecodeError) as info:
        decode_image(data)
    elapsed = time.perf_counter() - start
    assert type(info.value).__name__ == expected, info.value.message
    assert elapsed < 1.0, f"{name} took {elapsed:.2f}s"
    err = info.value
    assert 400 <= err.status < 500 and err.code and err.message and isinstance(err.details, dict)


@pytest.mark.filterwarnings("ignore::UserWarning")
@pytest.mark.parametrize("data_fn", [S.random_rgb, S.random_rgba])
@pytest.mark.parametrize("fmt", ["PNG", "JPEG", "GIF", "WEBP", "BMP", "TIFF", "ICO"])
@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.data())
def test_damaged_files_only_ever_raise_decode_errors(fmt: str, data_fn: object, data: st.DataObject) -> None:
    """Random truncations and byte flips never leak a bare PIL/zlib/struct exception."""
    arr = data_fn(24, 24)  # type: ignore[operator]
    if fmt in ("JPEG", "BMP"):
        arr = arr[..., :3]
    raw = bytearray(S.encode(arr, fmt))
    cut = data.draw(st.integers(0, len(raw)))
    flips = data.draw(st.lists(st.tuples(st.integers(0, len(raw) - 1), st.integers(1, 255)), max_size=4))
    for pos, xor in flips:
        raw[pos] ^= xor
    damaged = bytes(raw[:cut]) if data.draw(st.booleans()) else bytes(raw)
    try:
        im = decode_image(damaged)
    except errors.ImageDecodeError:
        return
    assert im.mode in ("L", "LA", "RGB", "RGBA")


# ---------------------------------------------------------------- limits


def test_max_pixels_is_configurable_and_checked_from_the_header() -> None:
    data = S.encode(S.random_rgb(100, 100), "PNG")
    assert decode_image(data, max_pixels=10_000).size == (100, 100)
    with pytest.raises(errors.ImageTooLargeError) as info:
        decode_image(data, max_pixels=9_999)
    assert info.value.details["width"] == 100 and info.value.details["max_pixels"] == 9_999
    assert DEFAULT_MAX_PIXELS == 40_000_000


def test_limit_above_pillows_global_is_honoured() -> None:
    """Our limit decides, not PIL.Image.MAX_IMAGE_PIXELS (global state shared by threads)."""
    old = Image.MAX_IMAGE_PIXELS
    Image.MAX_IMAGE_PIXELS = 100
    try:
        assert decode_image(S.encode(S.random_rgb(20, 20), "PNG"), max_pixels=1000).size == (20, 20)
        assert decode_image(S.encode(S.random_rgb(20, 20), "JPEG"), max_pixels=1000).size == (20, 20)
    finally:
        Image.MAX_IMAGE_PIXELS = old


def test_bomb_with_configured_limit_passes_only_when_allowed() -> None:
    bomb = S.png_bomb(700)
    with pytest.raises(errors.ImageTooLargeError):
        decode_image(bomb, max_pixels=400_000)
    im = decode_image(bomb, max_pixels=490_000)
    assert im.size == (700, 700) and im.mode == "L" and np.asarray(im).max() == 0


# ---------------------------------------------------------------- valid edge cases


@pytest.mark.parametrize("fmt", ["PNG", "BMP", "TIFF", "WEBP", "GIF", "ICO", "JPEG"])
def test_one_by_one(fmt: str) -> None:
    arr = np.array([[[200, 30, 90]]], np.uint8)
    opts = {"WEBP": {"lossless": True}, "ICO": {"sizes": [(1, 1)]}}.get(fmt, {})  # Pillow 12 writes no 1×1 icon unasked
    im = decode_image(S.encode(arr, fmt, **opts))
    assert im.size == (1, 1)
    tol = 12 if fmt == "JPEG" else (8 if fmt == "GIF" else 0)
    assert np.abs(px(im.convert("RGB"))[0, 0] - arr[0, 0]).max() <= tol


@pytest.mark.parametrize(("fmt", "opts"), [("PNG", {}), ("BMP", {}), ("TIFF", {}), ("WEBP", {"lossless": True})])
def test_lossless_round_trip_on_real_photos(fmt: str, opts: dict) -> None:
    for name, arr in S.sample_rgb():
        im = decode_image(S.encode(arr, fmt, **opts))
        assert im.mode == "RGB" and np.array_equal(np.asarray(im), arr), name


def test_rgba_png_and_webp_keep_alpha() -> None:
    logo = S.photo_rgba()
    for fmt, opts in [("PNG", {}), ("WEBP", {"lossless": True, "exact": True}), ("TIFF", {})]:
        im = decode_image(S.encode(logo, fmt, **opts))
        assert im.mode == "RGBA" and np.array_equal(np.asarray(im), logo), fmt


def test_jpeg_real_photo_close_to_source() -> None:
    arr = S.sample_images()["astronaut"]
    im = decode_image(S.encode(arr, "JPEG", quality=95))
    assert im.mode == "RGB" and np.abs(px(im) - arr).mean() < 3


def test_gray_stays_gray() -> None:
    cam = S.sample_images()["camera"]
    for fmt in ("PNG", "JPEG", "TIFF"):
        im = decode_image(S.encode(cam, fmt))
        assert im.mode == "L" and im.size == (cam.shape[1], cam.shape[0])


def test_la_png_stays_la() -> None:
    arr = np.stack([S.random_rgb()[..., 0], S.random_rgb(seed=1)[..., 0]], axis=-1)
    im = decode_image(S.encode(Image.fromarray(arr, "LA"), "PNG"))
    assert im.mode == "LA" and np.array_equal(np.asarray(im), arr)


def test_sixteen_bit_gray_is_scaled_not_clipped() -> None:
    values = np.array([[0, 128, 129, 257, 32768, 65279, 65535]], np.uint16)
    expected = np.round(values / 257.0).astype(np.uint8)
    for fmt in ("PNG", "TIFF"):
        im = decode_image(S.encode(Image.fromarray(values), fmt))
        assert im.mode == "L" and np.array_equal(np.asarray(im), expected), fmt


def test_sixteen_bit_color_png_and_tiff_rounded() -> None:
    import cv2

    rng = np.random.default_rng(3)
    for ext in (".png", ".tiff"):
        for ch in (3, 4):
            arr = rng.integers(0, 65536, (9, 7, ch), dtype=np.uint16)
            ok, enc = cv2.imencode(ext, arr)
            assert ok
            im = decode_image(enc.tobytes())
            rgb_order = [2, 1, 0, 3][:ch]
            assert im.mode == ("RGBA" if ch == 4 else "RGB")
            assert np.array_equal(np.asarray(im), np.round(arr[..., rgb_order] / 257.0).astype(np.uint8)), (ext, ch)


def test_int32_and_float_images() -> None:
    i32 = Image.fromarray(np.array([[0, 257 * 10, 65535, 70000]], np.int32))
    assert np.array_equal(np.asarray(decode_image(S.encode(i32, "TIFF"))), [[0, 10, 255, 255]])
    unit = Image.fromarray(np.array([[0.0, 0.5, 1.0]], np.float32))
    assert np.array_equal(np.asarray(decode_image(S.encode(unit, "TIFF"))), [[0, 128, 255]])
    wide = Image.fromarray(np.array([[-1.0, 0.0, 3.0]], np.float32))
    assert np.array_equal(np.asarray(decode_image(S.encode(wide, "TIFF"))), [[0, 64, 255]])


@pytest.mark.parametrize("fmt", ["JPEG", "TIFF"])
def test_cmyk_becomes_rgb(fmt: str) -> None:
    cases = {
        (255, 0, 0, 0): (0, 255, 255),
        (0, 255, 0, 0): (255, 0, 255),
        (0, 0, 0, 255): (0, 0, 0),
        (0, 0, 0, 0): (255, 255, 255),
    }
    for cmyk, rgb in cases.items():
        im = decode_image(S.encode(Image.new("CMYK", (8, 8), cmyk), fmt, **({"quality": 100} if fmt == "JPEG" else {})))
        assert im.mode == "RGB" and np.abs(px(im)[4, 4] - rgb).max() <= 3, (cmyk, im.getpixel((4, 4)))


def test_palette_with_trns_becomes_rgba() -> None:
    p = Image.new("P", (4, 2))
    p.putpalette([255, 0, 0, 0, 255, 0, 0, 0, 255] + [0] * (256 * 3 - 9))
    p.putdata([0, 1, 2, 0, 1, 2, 0, 1])
    im = decode_image(S.encode(p, "PNG", transparency=1))
    assert im.mode == "RGBA"
    assert np.array_equal(np.asarray(im)[0, :3], [[255, 0, 0, 255], [0, 255, 0, 0], [0, 0, 255, 255]])
    opaque = decode_image(S.encode(p, "PNG"))
    assert opaque.mode == "RGB" and opaque.getpixel((1, 0)) == (0, 255, 0)


def test_truecolor_and_gray_trns_color_keys() -> None:
    rgb = Image.new("RGB", (3, 1), (10, 20, 30))
    rgb.putpixel((1, 0), (1, 2, 3))
    im = decode_image(S.encode(rgb, "PNG", transparency=(1, 2, 3)))
    assert im.mode == "RGBA" and np.asarray(im)[0, :, 3].tolist() == [255, 0, 255]
    gray = Image.new("L", (3, 1), 7)
    gray.putpixel((2, 0), 9)
    im = decode_image(S.encode(gray, "PNG", transparency=9))
    assert im.mode == "LA" and np.asarray(im)[0].tolist() == [[7, 255], [7, 255], [9, 0]]


def test_palette_with_alpha_table() -> None:
    p = Image.new("P", (3, 1))
    p.putpalette([10, 20, 30, 40, 50, 60, 70, 80, 90] + [0] * (256 * 3 - 9))
    p.putdata([0, 1, 2])
    im = decode_image(S.encode(p, "PNG", transparency=bytes([0, 128, 255])))
    assert np.array_equal(np.asarray(im)[0], [[10, 20, 30, 0], [40, 50, 60, 128], [70, 80, 90, 255]])


def test_gif_transparency_and_bilevel() -> None:
    p = Image.new("P", (4, 4), 0)
    p.putpalette([0, 0, 0, 255, 255, 255] + [0] * (256 * 3 - 6))
    p.putpixel((1, 1), 1)
    im = decode_image(S.encode(p, "GIF", transparency=0))
    assert im.mode == "RGBA" and im.getpixel((0, 0))[3] == 0 and im.getpixel((1, 1)) == (255, 255, 255, 255)
    bw = decode_image(S.encode(Image.new("1", (5, 5), 1), "BMP"))
    assert bw.mode == "L" and bw.getpixel((2, 2)) == 255


ORIENTATION_OPS = {
    1: lambda a: a,
    2: lambda a: a[:, ::-1],
    3: lambda a: a[::-1, ::-1],
    4: lambda a: a[::-1],
    5: lambda a: np.swapaxes(a, 0, 1),
    6: lambda a: np.rot90(a, -1),
    7: lambda a: np.rot90(a, -1)[::-1],
    8: lambda a: np.rot90(a, 1),
}


@pytest.mark.parametrize("orientation", range(1, 9))
def test_exif_orientation_applied(orientation: int) -> None:
    arr = S.quadrants(40, 60)
    exif = Image.Exif()
    exif[0x0112] = orientation
    im = decode_image(S.encode(arr, "PNG", exif=exif.tobytes()))
    expected = np.ascontiguousarray(ORIENTATION_OPS[orientation](arr))
    assert np.array_equal(np.asarray(im), expected)
    reference = ImageOps.exif_transpose(Image.open(io.BytesIO(S.encode(arr, "PNG", exif=exif.tobytes()))))
    assert np.array_equal(np.asarray(im), np.asarray(reference.convert("RGB")))


def test_exif_rotated_jpeg_with_reduced_decoding() -> None:
    arr = S.smooth_photo(800, 1200)
    data = S.jpeg_exif(arr, 6)
    full = decode_image(data)
    assert full.size == (800, 1200)
    small = decode_image(data, target_size=(100, 150))
    assert small.size == (100, 150)  # 1/8 scale, still >= target after rotation
    ref = np.asarray(full.resize(small.size, Image.Resampling.BOX)).astype(np.int32)
    assert np.abs(px(small) - ref).mean() < 4


def test_reduced_decoding_is_never_smaller_than_target() -> None:
    data = S.encode(S.smooth_photo(1500, 2000), "JPEG", quality=90)
    for target in [(224, 224), (250, 188), (251, 188), (1000, 10), (5000, 5000), (1, 1)]:
        im = decode_image(data, target_size=target)
        w, h = im.size
        assert (w >= min(target[0], 2000) and h >= min(target[1], 1500)) or im.size == (2000, 1500), (target, im.size)
    assert decode_image(data, target_size=(224, 224)).size == (500, 375)  # 1/4: 1/8 would be 250x188 < 224 high
    assert decode_image(S.encode(S.random_rgb(64, 64), "PNG"), target_size=(8, 8)).size == (64, 64)


def test_animated_gif_first_frame() -> None:
    im = decode_image(S.animated_gif([(255, 0, 0), (0, 255, 0), (0, 0, 255)]))
    assert im.mode == "RGB" and im.getpixel((3, 3)) == (255, 0, 0)
    real = S.skimage_file("no_time_for_that_tiny.gif")
    with Image.open(io.BytesIO(real)) as ref:
        assert getattr(ref, "n_frames", 1) > 1
        ref_rgb = np.asarray(ref.convert("RGBA" if "transparency" in ref.info else "RGB"))
    assert np.array_equal(np.asarray(decode_image(real)), ref_rgb)


def test_multipage_tiff_first_page() -> None:
    im = decode_image(S.multipage_tiff([(10, 20, 30), (200, 100, 0)]))
    assert im.getpixel((0, 0)) == (10, 20, 30)
    real = S.skimage_file("multipage.tif")
    with Image.open(io.BytesIO(real)) as ref:
        assert ref.n_frames > 1
        first = np.asarray(ref.convert("L"))
    assert np.array_equal(np.asarray(decode_image(real)), first)


def test_float64_planar_tiff_pillow_cannot_read() -> None:
    """scikit-image's multipage_rgb.tif: float64, planar, 2 pages - read through the tifffile fallback."""
    import tifffile

    real = S.skimage_file("multipage_rgb.tif")
    im = decode_image(real)
    page = np.moveaxis(tifffile.imread(io.BytesIO(real), key=0), 0, -1)
    assert im.mode == "RGB" and im.size == (10, 10)
    assert np.array_equal(np.asarray(im), np.rint(page * 255).astype(np.uint8))


def test_ico_largest_icon() -> None:
    arr = S.random_rgba(64, 64)
    im = decode_image(S.encode(arr, "ICO", sizes=[(16, 16), (64, 64)]))
    assert im.size == (64, 64) and im.mode == "RGBA" and np.array_equal(np.asarray(im), arr)


def test_real_jpeg_files_from_scikit_image() -> None:
    """retina.jpg is plain sRGB; rocket.jpg carries an Adobe RGB (1998) profile that must be converted."""
    srgb = ImageCms.createProfile("sRGB")
    for name in ("rocket.jpg", "retina.jpg"):
        data = S.skimage_file(name)
        im = decode_image(data)
        with Image.open(io.BytesIO(data)) as ref:
            ref.load()
            expected = ImageOps.exif_transpose(ref).convert("RGB")
            icc = ref.info.get("icc_profile")
        if icc:
            src = ImageCms.ImageCmsProfile(io.BytesIO(icc))
            assert "Adobe RGB" in ImageCms.getProfileDescription(src)
            expected = ImageCms.profileToProfile(expected, src, srgb, renderingIntent=ImageCms.Intent.PERCEPTUAL)
        assert np.array_equal(np.asarray(im), np.asarray(expected)), name


# ---------------------------------------------------------------- ICC


def test_icc_profile_converted_to_srgb() -> None:
    arr = S.random_rgb(16, 16)
    icc = S.adobe_rgb_icc()
    for fmt in ("PNG", "TIFF"):
        im = decode_image(S.encode(arr, fmt, icc_profile=icc))
        ref = ImageCms.profileToProfile(
            Image.fromarray(arr),
            ImageCms.ImageCmsProfile(io.BytesIO(icc)),
            ImageCms.createProfile("sRGB"),
            renderingIntent=ImageCms.Intent.PERCEPTUAL,
        )
        assert np.array_equal(np.asarray(im), np.asarray(ref)), fmt
        assert np.abs(px(im) - arr).max() > 5  # the profile really did something


def test_icc_with_alpha_keeps_alpha_and_srgb_profile_is_a_no_op() -> None:
    rgba = S.random_rgba(8, 8)
    im = decode_image(S.encode(rgba, "PNG", icc_profile=S.adobe_rgb_icc()))
    assert im.mode == "RGBA" and np.array_equal(np.asarray(im)[..., 3], rgba[..., 3])
    srgb = ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes()
    rgb = S.random_rgb(8, 8)
    assert np.array_equal(np.asarray(decode_image(S.encode(rgb, "PNG", icc_profile=srgb))), rgb)
    assert np.array_equal(np.asarray(decode_image(S.encode(rgb, "PNG", icc_profile=b"garbage profile"))), rgb)


# ---------------------------------------------------------------- SVG


def test_svg_rasterised_at_intrinsic_and_requested_size() -> None:
    im = decode_image(S.SVG_OK)
    assert im.mode == "RGBA" and im.size == (40, 20)
    assert im.getpixel((5, 10)) == (255, 0, 0, 255) and im.getpixel((30, 10))[3] == 0
    big = decode_image(S.SVG_OK, svg_size=(400, 200))
    assert big.size == (400, 200) and big.getpixel((50, 100)) == (255, 0, 0, 255) and big.getpixel((300, 100))[3] == 0
    assert rasterize_svg(S.SVG_OK, size=(80, 40)).size == (80, 40)
    assert decode_image(S.SVG_OK, target_size=(224, 224)).size == (448, 224)  # covers the target, aspect kept
    assert decode_image(S.SVG_HUGE, target_size=(224, 224)).size == (224, 224)  # huge intrinsic size, small render


def test_svg_intrinsic_size_rules() -> None:
    def size(attrs: str) -> tuple[int, int]:
        return intrinsic_size(parse_svg(f'<svg xmlns="http://www.w3.org/2000/svg" {attrs}/>'.encode()))

    assert size('width="2in" height="1in"') == (192, 96)
    assert size('viewBox="0 0 640 480"') == (640, 480)
    assert size('width="320" viewBox="0,0,640,480"') == (320, 240)
    assert size('width="100%" height="100%" viewBox="0 0 50 25"') == (50, 25)
    assert size("") == (300, 150)


def test_svg_safe_features_allowed() -> None:
    gradient = (
        f'<!DOCTYPE svg PUBLIC "-//W3C//DTD SVG 1.1//EN" "http://www.w3.org/Graphics/SVG/1.1/DTD/svg11.dtd">'
        f'<svg {S.SVG_NS} width="10" height="10"><defs><linearGradient id="g"><stop offset="0" stop-color="#00f"/></linearGradient>'  # noqa: E501 (literal test data)
        f'<rect id="r" width="5" height="5"/></defs><rect width="10" height="10" fill="url(#g)"/><use xlink:href="#r" fill="red"/></svg>'  # noqa: E501 (literal test data)
    ).encode()
    im = decode_image(gradient)
    assert im.getpixel((8, 8)) == (0, 0, 255, 255)
    link = f'<svg {S.SVG_NS} width="4" height="4"><a xlink:href="https://example.com"><rect width="4" height="4"/></a></svg>'  # noqa: E501 (literal test data)
    assert decode_image(link.encode()).getpixel((1, 1)) == (0, 0, 0, 255)  # a hyperlink is not a fetch
    embedded = decode_image(S.svg_with_data_image(S.encode(Image.new("RGB", (8, 8), (0, 255, 0)), "PNG")))
    assert embedded.getpixel((4, 4)) == (0, 255, 0, 255)


def test_svg_canvas_limits() -> None:
    with pytest.raises(errors.ImageTooLargeError):
        decode_image(S.SVG_OK, svg_size=(20000, 10))
    with pytest.raises(errors.ImageTooLargeError):
        decode_image(S.SVG_OK, svg_size=(4000, 4000), max_pixels=1_000_000)
    assert decode_image(S.SVG_HUGE, svg_size=(64, 64)).size == (64, 64)  # the caller's size wins


def test_svg_xxe_never_reads_the_file(tmp_path) -> None:
    secret = tmp_path / "secret.txt"
    secret.write_text("TOPSECRET")
    payload = S.SVG_XXE.replace(b"file:///etc/passwd", f"file://{secret}".encode())
    with pytest.raises(errors.UnsafeImageError):
        decode_image(payload)


# ---------------------------------------------------------------- PSD


def test_psd_layered_composite_and_layer_list() -> None:
    data, expected = S.psd_layered()
    im = decode_image(data)
    assert im.mode == "RGB" and np.array_equal(np.asarray(im), expected)
    assert np.array_equal(np.asarray(decode_psd(data)), expected)
    layers = psd_layers(data)
    assert [(layer.name, layer.visible, layer.left, layer.top, layer.width, layer.height) for layer in layers] == [
        ("Background blue", True, 0, 0, 40, 30),
        ("Red box", True, 10, 5, 20, 10),
        ("Hidden green", False, 0, 0, 40, 30),
    ]
    assert layers[1].to_dict()["kind"] == "pixel"


def test_hand_written_flat_psd() -> None:
    rgb = S.random_rgb(5, 7)
    assert np.array_equal(np.asarray(decode_image(S.psd_flat(rgb))), rgb)
    gray = rgb[..., 0]
    assert np.array_equal(np.asarray(decode_image(S.psd_flat(gray))), gray)
    rgba = S.random_rgba(5, 7)
    rgba[..., 3] = np.clip(rgba[..., 3], 128, 255)
    im = decode_image(S.psd_flat(rgba))
    assert im.mode == "RGBA" and np.abs(px(im) - rgba).max() <= 2
    header = read_psd_header(S.psd_flat(rgb))
    assert (header.width, header.height, header.channels, header.color_mode) == (7, 5, 3, "rgb")


def test_psd_limits() -> None:
    with pytest.raises(errors.ImageTooLargeError):
        decode_image(S.psd_flat(S.random_rgb(50, 50)), max_pixels=2000)


# ---------------------------------------------------------------- encoding


def test_encode_round_trips() -> None:
    rgba = S.random_rgba(16, 16)
    for fmt in ("png", "tiff"):
        assert np.array_equal(np.asarray(decode_image(encode_image(Image.fromarray(rgba), fmt))), rgba)
    assert np.array_equal(np.asarray(decode_image(encode_image(Image.fromarray(rgba), "webp", quality=100))), rgba)
    jpeg = decode_image(encode_image(Image.fromarray(rgba), "jpeg", quality=95))
    assert jpeg.mode == "RGB"
    assert sniff_format(encode_image(Image.fromarray(rgba), "jpg")) == "jpeg"
    with pytest.raises(ValueError):
        encode_image(Image.fromarray(rgba), "psd")
    with pytest.raises(ValueError):
        encode_image(Image.fromarray(rgba), "jpeg", quality=0)
