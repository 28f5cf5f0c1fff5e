"""Test inputs for the imaging tests: generated images, scikit-image photos, hand-built files and bad inputs."""

from __future__ import annotations

import io
import struct
import zlib
from functools import lru_cache

import numpy as np
import pytest
from PIL import Image

SVG_NS = 'xmlns="http://www.w3.org/2000/svg" xmlns:xlink="http://www.w3.org/1999/xlink"'


def encode(im: Image.Image | np.ndarray, fmt: str, **options: object) -> bytes:
    """Save an image (or array) with Pillow and return the bytes."""
    if isinstance(im, np.ndarray):
        im = Image.fromarray(im)
    buf = io.BytesIO()
    im.save(buf, fmt, **options)
    return buf.getvalue()


def random_rgb(h: int = 32, w: int = 48, seed: int = 0) -> np.ndarray:
    """Uniform random uint8 HxWx3."""
    return np.random.default_rng(seed).integers(0, 256, (h, w, 3), dtype=np.uint8)


def random_rgba(h: int = 32, w: int = 48, seed: int = 0) -> np.ndarray:
    """Uniform random uint8 HxWx4 (alpha random too)."""
    return np.random.default_rng(seed).integers(0, 256, (h, w, 4), dtype=np.uint8)


def quadrants(h: int = 40, w: int = 60) -> np.ndarray:
    """RGB image with red/green/blue/white quadrants (TL/TR/BL/BR) to check orientation."""
    a = np.zeros((h, w, 3), np.uint8)
    a[: h // 2, : w // 2] = (255, 0, 0)
    a[: h // 2, w // 2 :] = (0, 255, 0)
    a[h // 2 :, : w // 2] = (0, 0, 255)
    a[h // 2 :, w // 2 :] = (255, 255, 255)
    return a


def smooth_photo(h: int, w: int) -> np.ndarray:
    """Large smooth 'photo' (scikit-image astronaut upscaled) that compresses like a real JPEG."""
    import cv2

    return cv2.resize(sample_images()["astronaut"], (w, h), interpolation=cv2.INTER_CUBIC)


@lru_cache(maxsize=1)
def sample_images() -> dict[str, np.ndarray]:
    """scikit-image's bundled photos (no download): RGB, gray and an RGBA logo."""
    from skimage import data

    return {
        "astronaut": data.astronaut(),
        "coffee": data.coffee(),
        "chelsea": data.chelsea(),
        "rocket": data.rocket(),
        "camera": data.camera(),
        "logo": data.logo(),
    }


def photo_rgba(name: str = "chelsea") -> np.ndarray:
    """A real photo with a generated alpha: opaque disc, soft ramp, fully transparent corners."""
    rgb = sample_images()[name]
    h, w = rgb.shape[:2]
    yy, xx = np.mgrid[0:h, 0:w]
    r = np.hypot((yy - h / 2) / (h / 2), (xx - w / 2) / (w / 2))
    alpha = np.clip((1.0 - r) * 2.0 * 255.0, 0, 255).astype(np.uint8)
    return np.dstack([rgb, alpha])


def sample_rgb() -> list[tuple[str, np.ndarray]]:
    """The RGB photos only."""
    return [(k, v) for k, v in sample_images().items() if v.ndim == 3 and v.shape[2] == 3]


def skimage_file(name: str) -> bytes:
    """Raw bytes of a file shipped inside scikit-image's data folder."""
    from pathlib import Path

    import skimage.data

    return (Path(skimage.data.__file__).parent / name).read_bytes()


# ---------------------------------------------------------------- PNG building


def png_chunk(ctype: bytes, payload: bytes) -> bytes:
    """One PNG chunk with a correct CRC."""
    return struct.pack(">I", len(payload)) + ctype + payload + struct.pack(">I", zlib.crc32(ctype + payload))


def png_from_rows(width: int, height: int, raw: bytes, *, bit_depth: int = 8, color_type: int = 0) -> bytes:
    """A PNG from already filtered scanlines."""
    ihdr = struct.pack(">IIBBBBB", width, height, bit_depth, color_type, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + png_chunk(b"IHDR", ihdr)
        + png_chunk(b"IDAT", zlib.compress(raw, 9))
        + png_chunk(b"IEND", b"")
    )


def png_bomb(side: int = 7000) -> bytes:
    """A valid all-black grayscale PNG of side x side pixels that is only a few tens of KB."""
    comp = zlib.compressobj(9)
    row = b"\x00" * (side + 1)
    parts = [comp.compress(row) for _ in range(side)]
    idat = b"".join(parts) + comp.flush()
    ihdr = struct.pack(">IIBBBBB", side, side, 8, 0, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + png_chunk(b"IHDR", ihdr) + png_chunk(b"IDAT", idat) + png_chunk(b"IEND", b"")


def png_header_only_bomb(width: int = 100_000, height: int = 100_000) -> bytes:
    """A PNG claiming a gigantic canvas with almost no data."""
    return (
        png_from_rows(1, 1, b"\x00\x00")[:8]
        + png_chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0))
        + png_chunk(b"IDAT", zlib.compress(b"\x00" * 100))
        + png_chunk(b"IEND", b"")
    )


def png_bad_crc() -> bytes:
    """A valid PNG with one flipped bit in the IDAT CRC."""
    data = bytearray(encode(random_rgb(8, 8), "PNG"))
    idat = data.index(b"IDAT")
    length = struct.unpack_from(">I", data, idat - 4)[0]
    data[idat + 4 + length] ^= 0x01
    return bytes(data)


def png_bad_data() -> bytes:
    """A PNG whose IDAT holds non-zlib garbage but correct CRCs (damage before the CRC was computed)."""
    ihdr = struct.pack(">IIBBBBB", 16, 16, 8, 2, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + png_chunk(b"IHDR", ihdr)
        + png_chunk(b"IDAT", b"not zlib at all" * 4)
        + png_chunk(b"IEND", b"")
    )


def gif_huge_dimensions() -> bytes:
    """A GIF declaring a 65535x65535 screen and frame with a handful of LZW bytes."""
    header = b"GIF89a" + struct.pack("<HHBBB", 65535, 65535, 0x80, 0, 0) + b"\x00\x00\x00\xff\xff\xff"
    frame = b"," + struct.pack("<HHHHB", 0, 0, 65535, 65535, 0) + b"\x02\x02\x44\x01\x00"
    return header + frame + b";"


def jpeg_exif(arr: np.ndarray, orientation: int, quality: int = 95) -> bytes:
    """JPEG with an EXIF orientation tag."""
    exif = Image.Exif()
    exif[0x0112] = orientation
    return encode(arr, "JPEG", quality=quality, exif=exif.tobytes())


def animated_gif(colors: list[tuple[int, int, int]], size: tuple[int, int] = (16, 12)) -> bytes:
    """An animated GIF with one solid frame per color."""
    frames = [Image.new("RGB", size, c) for c in colors]
    return encode(frames[0], "GIF", save_all=True, append_images=frames[1:], duration=50, loop=0)


def multipage_tiff(colors: list[tuple[int, int, int]], size: tuple[int, int] = (16, 12)) -> bytes:
    """A multi-page TIFF with one solid page per color (the first may differ in size)."""
    pages = [Image.new("RGB", size, c) for c in colors]
    return encode(pages[0], "TIFF", save_all=True, append_images=pages[1:])


# ---------------------------------------------------------------- PSD building


def psd_flat(arr: np.ndarray) -> bytes:
    """A minimal hand-written PSD (no layers, raw 8-bit merged image) holding an RGB/RGBA/gray array."""
    if arr.ndim == 2:
        arr = arr[..., None]
    h, w, c = arr.shape
    mode = 1 if c in (1, 2) else 3
    if c in (2, 4):  # Photoshop stores the merged color matted against white
        a = arr[..., -1:].astype(np.float64) / 255.0
        color = np.rint(arr[..., :-1] * a + 255.0 * (1.0 - a)).astype(np.uint8)
        arr = np.concatenate([color, arr[..., -1:]], axis=-1)
    header = b"8BPS" + struct.pack(">H6sHIIHH", 1, b"\x00" * 6, c, h, w, 8, mode)
    sections = struct.pack(">I", 0) + struct.pack(">I", 0) + struct.pack(">I", 0)
    planes = b"".join(np.ascontiguousarray(arr[..., i]).tobytes() for i in range(c))
    return header + sections + struct.pack(">H", 0) + planes


def psd_layered() -> tuple[bytes, np.ndarray]:
    """A small two-layer RGB PSD (written by psd-tools) and the composite we expect from it."""
    from psd_tools import PSDImage

    psd = PSDImage.new("RGB", (40, 30), color=(255, 255, 255))
    bottom = Image.new("RGB", (40, 30), (0, 0, 255))
    top = Image.new("RGBA", (20, 10), (255, 0, 0, 255))
    hidden = Image.new("RGBA", (40, 30), (0, 255, 0, 255))
    psd.create_pixel_layer(bottom, name="Background blue")
    psd.create_pixel_layer(top, name="Red box", top=5, left=10)
    layer = psd.create_pixel_layer(hidden, name="Hidden green")
    layer.visible = False
    buf = io.BytesIO()
    psd.save(buf)
    expected = np.zeros((30, 40, 3), np.uint8)
    expected[:] = (0, 0, 255)
    expected[5:15, 10:30] = (255, 0, 0)
    return buf.getvalue(), expected


# ---------------------------------------------------------------- SVG

SVG_OK = f'<svg {SVG_NS} width="40" height="20" viewBox="0 0 40 20"><rect x="0" y="0" width="20" height="20" fill="#ff0000"/></svg>'.encode()  # noqa: E501 (literal test data)

SVG_XXE = f"""<?xml version="1.0"?>
<!DOCTYPE svg [<!ENTITY xxe SYSTEM "file:///etc/passwd">]>
<svg {SVG_NS} width="10" height="10"><text>&xxe;</text></svg>""".encode()

SVG_ENTITY_BOMB = (
    '<?xml version="1.0"?>\n<!DOCTYPE svg [\n<!ENTITY a0 "lol">\n'
    + "".join(f'<!ENTITY a{i} "{("&a" + str(i - 1) + ";") * 10}">\n' for i in range(1, 10))
    + f']>\n<svg {SVG_NS} width="10" height="10"><text>&a9;</text></svg>'
).encode()

SVG_EXTERNAL_HTTP = f'<svg {SVG_NS} width="10" height="10"><image xlink:href="http://169.254.169.254/latest/meta-data" width="10" height="10"/></svg>'.encode()  # noqa: E501 (literal test data)
SVG_EXTERNAL_FILE = (
    f'<svg {SVG_NS} width="10" height="10"><image href="file:///etc/passwd" width="10" height="10"/></svg>'.encode()
)
SVG_EXTERNAL_RELATIVE = (
    f'<svg {SVG_NS} width="10" height="10"><image href="../../secret.png" width="10" height="10"/></svg>'.encode()
)
SVG_EXTERNAL_CSS = (
    f'<svg {SVG_NS} width="10" height="10"><style>@import url(http://example.com/a.css);</style></svg>'.encode()
)
SVG_EXTERNAL_USE = (
    f'<svg {SVG_NS} width="10" height="10"><use xlink:href="http://example.com/sprite.svg#a"/></svg>'.encode()
)
SVG_EXTERNAL_FILL = f'<svg {SVG_NS} width="10" height="10"><rect width="10" height="10" fill="url(http://example.com/p.svg#g)"/></svg>'.encode()
SVG_STYLESHEET_PI = f'<?xml-stylesheet href="http://example.com/x.css"?><svg {SVG_NS} width="10" height="10"/>'.encode()
SVG_SCRIPT = f'<svg {SVG_NS} width="10" height="10"><script>fetch("http://example.com")</script></svg>'.encode()
SVG_ONLOAD = f'<svg {SVG_NS} width="10" height="10" onload="alert(1)"><rect width="5" height="5"/></svg>'.encode()
SVG_HUGE = f'<svg {SVG_NS} width="100000" height="100000"><rect width="10" height="10"/></svg>'.encode()
SVG_USE_BOMB = (
    f'<svg {SVG_NS} width="10" height="10"><defs><rect id="l0" width="1" height="1"/>'
    + "".join(
        f'<g id="l{i}">' + "".join(f'<use xlink:href="#l{i - 1}"/>' for _ in range(10)) + "</g>" for i in range(1, 9)
    )
    + '</defs><use xlink:href="#l8"/></svg>'
).encode()
SVG_USE_CYCLE = f'<svg {SVG_NS} width="10" height="10"><g id="a"><use xlink:href="#b"/></g><g id="b"><use xlink:href="#a"/></g></svg>'.encode()  # noqa: E501 (literal test data)
SVG_MALFORMED = f"<svg {SVG_NS} width='10'><rect></svg>".encode()


def svg_with_data_image(png: bytes) -> bytes:
    """An SVG embedding a PNG as a base64 data URL."""
    import base64

    url = "data:image/png;base64," + base64.b64encode(png).decode()
    return f'<svg {SVG_NS} width="8" height="8"><image width="8" height="8" xlink:href="{url}"/></svg>'.encode()


# ---------------------------------------------------------------- bad-input corpus


def bad_inputs() -> dict[str, tuple[bytes, str]]:
    """name -> (bytes, expected error class name); every entry must fail fast with exactly that class."""
    jpeg = encode(smooth_photo(256, 256), "JPEG", quality=90)
    png = encode(random_rgb(64, 64), "PNG")
    return {
        "zero_bytes": (b"", "EmptyImageError"),
        "text_named_png": (b"hello, this is not an image\n", "UnsupportedFormatError"),
        "html": (b"<!doctype html><html><body>hi</body></html>", "UnsupportedFormatError"),
        "pdf": (b"%PDF-1.7\n1 0 obj\n<<>>\nendobj\n", "UnsupportedFormatError"),
        "gzip": (b"\x1f\x8b\x08\x00" + b"\x00" * 20, "UnsupportedFormatError"),
        "png_magic_only": (b"\x89PNG\r\n\x1a\n", "CorruptImageError"),
        "truncated_png": (png[: len(png) // 2], "CorruptImageError"),
        "png_no_iend": (png[:-12], "CorruptImageError"),
        "png_bad_crc": (png_bad_crc(), "CorruptImageError"),
        "png_bad_zlib": (png_bad_data(), "CorruptImageError"),
        "jpeg_magic_only": (b"\xff\xd8\xff", "CorruptImageError"),
        "truncated_jpeg": (jpeg[: len(jpeg) // 2], "CorruptImageError"),
        "jpeg_garbage": (b"\xff\xd8\xff\xe0" + bytes(range(256)) * 4, "CorruptImageError"),
        "truncated_gif": (encode(random_rgb(32, 32), "GIF")[:40], "CorruptImageError"),
        "truncated_webp": (encode(random_rgb(64, 64), "WEBP")[:60], "CorruptImageError"),
        "truncated_bmp": (encode(random_rgb(32, 32), "BMP")[:80], "CorruptImageError"),
        "truncated_tiff": (encode(random_rgb(64, 64), "TIFF")[:100], "CorruptImageError"),
        "decompression_bomb_png": (png_bomb(), "ImageTooLargeError"),
        "header_bomb_png": (png_header_only_bomb(), "ImageTooLargeError"),
        "huge_dimension_gif": (gif_huge_dimensions(), "ImageTooLargeError"),
        "svg_xxe": (SVG_XXE, "UnsafeImageError"),
        "svg_entity_bomb": (SVG_ENTITY_BOMB, "UnsafeImageError"),
        "svg_external_http": (SVG_EXTERNAL_HTTP, "UnsafeImageError"),
        "svg_external_file": (SVG_EXTERNAL_FILE, "UnsafeImageError"),
        "svg_external_relative": (SVG_EXTERNAL_RELATIVE, "UnsafeImageError"),
        "svg_external_css": (SVG_EXTERNAL_CSS, "UnsafeImageError"),
        "svg_external_use": (SVG_EXTERNAL_USE, "UnsafeImageError"),
        "svg_external_fill": (SVG_EXTERNAL_FILL, "UnsafeImageError"),
        "svg_stylesheet_pi": (SVG_STYLESHEET_PI, "UnsafeImageError"),
        "svg_script": (SVG_SCRIPT, "UnsafeImageError"),
        "svg_onload": (SVG_ONLOAD, "UnsafeImageError"),
        "svg_use_bomb": (SVG_USE_BOMB, "UnsafeImageError"),
        "svg_use_cycle": (SVG_USE_CYCLE, "UnsafeImageError"),
        "svg_huge_canvas": (SVG_HUGE, "ImageTooLargeError"),
        "svg_malformed": (SVG_MALFORMED, "CorruptImageError"),
        "svg_embedded_bomb": (svg_with_data_image(png_header_only_bomb()), "ImageTooLargeError"),
        "psd_bad_header": (b"8BPS\x00\x07" + b"\x00" * 40, "CorruptImageError"),
        "psd_truncated_header": (b"8BPS\x00\x01\x00\x00", "CorruptImageError"),
        "psd_truncated_body": (psd_flat(random_rgb(16, 16))[:60], "CorruptImageError"),
        "psd_huge_canvas": (
            b"8BPS" + struct.pack(">H6sHIIHH", 1, b"\x00" * 6, 3, 30000, 30000, 8, 3) + b"\x00" * 14,
            "ImageTooLargeError",
        ),
        "ico_truncated": (
            b"\x00\x00\x01\x00\x01\x00" + b"\x10\x10\x00\x00\x01\x00\x20\x00" + struct.pack("<II", 1000, 22),
            "CorruptImageError",
        ),
    }


# ---------------------------------------------------------------- ICC profile


def _s15f16(v: float) -> bytes:
    """ICC s15Fixed16Number."""
    return struct.pack(">i", round(v * 65536))


def adobe_rgb_icc() -> bytes:
    """A hand-built ICC v2 matrix/TRC display profile with Adobe RGB (1998) primaries and gamma 2.2."""

    def xyz(x: float, y: float, z: float) -> bytes:
        return b"XYZ \x00\x00\x00\x00" + _s15f16(x) + _s15f16(y) + _s15f16(z)

    curve = b"curv\x00\x00\x00\x00" + struct.pack(">IH", 1, 563) + b"\x00\x00"
    text = b"Adobe RGB test\x00"
    desc = b"desc\x00\x00\x00\x00" + struct.pack(">I", len(text)) + text + b"\x00" * 8 + b"\x00\x00\x00" + b"\x00" * 67
    desc += b"\x00" * (-len(desc) % 4)
    cprt = b"text\x00\x00\x00\x00" + b"No copyright\x00"
    cprt += b"\x00" * (-len(cprt) % 4)
    tags = [
        (b"desc", desc),
        (b"cprt", cprt),
        (b"wtpt", xyz(0.9642, 1.0, 0.8249)),
        (b"rXYZ", xyz(0.6097, 0.3111, 0.0195)),
        (b"gXYZ", xyz(0.2053, 0.6257, 0.0609)),
        (b"bXYZ", xyz(0.1492, 0.0632, 0.7446)),
        (b"rTRC", curve),
        (b"gTRC", curve),
        (b"bTRC", curve),
    ]
    table_size = 4 + 12 * len(tags)
    offset = 128 + table_size
    table = struct.pack(">I", len(tags))
    body = b""
    for sig, payload in tags:
        table += sig + struct.pack(">II", offset + len(body), len(payload))
        body += payload
    total = 128 + table_size + len(body)
    header = (
        struct.pack(">I", total)
        + b"lcms"
        + struct.pack(">I", 0x02100000)
        + b"mntrRGB XYZ "
        + struct.pack(">6H", 2024, 1, 1, 0, 0, 0)
        + b"acsp"
        + b"APPL"
        + b"\x00" * 4
        + b"none"
        + b"none"
        + b"\x00" * 8
        + struct.pack(">I", 0)
        + _s15f16(0.9642)
        + _s15f16(1.0)
        + _s15f16(0.8249)
        + b"test"
        + b"\x00" * 16
        + b"\x00" * 28
    )
    assert len(header) == 128
    return header + table + body


# ---------------------------------------------------------------- fixtures shared by the imaging test modules


@pytest.fixture(scope="module")
def torch_single_thread():
    """Run a module's torch work on one intra-op thread (restored afterwards).

    The imaging tests use small tensors; on a busy 2-core machine OpenMP worker threads spin against other
    processes and make them several times slower, which says nothing about the code under test.
    """
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)
