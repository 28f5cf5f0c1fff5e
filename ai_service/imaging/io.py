"""Bytes -> pixels and back: format sniffing, safe bounded decoding, mode normalization, encoding."""

from __future__ import annotations

import io
import struct
import zlib
from functools import lru_cache
from typing import Final

import numpy as np
from PIL import Image, ImageCms, ImageFile, ImageOps, UnidentifiedImageError

from ai_service.imaging.errors import (
    CorruptImageError,
    EmptyImageError,
    ImageDecodeError,
    ImageTooLargeError,
    LayerNotFoundError,
    UnsupportedFormatError,
)

DEFAULT_MAX_PIXELS: Final = 40_000_000
#: Modes every decoded image ends up in, so callers only ever handle four cases.
NORMAL_MODES: Final = ("L", "LA", "RGB", "RGBA")
#: Our format name -> Pillow's plugin name (we never let Pillow guess from the filename).
PIL_FORMATS: Final = {
    "png": "PNG",
    "jpeg": "JPEG",
    "webp": "WEBP",
    "bmp": "BMP",
    "tiff": "TIFF",
    "gif": "GIF",
    "ico": "ICO",
}
#: Content types for every format we can write (and read).
MIME_TYPES: Final = {
    "png": "image/png",
    "jpeg": "image/jpeg",
    "webp": "image/webp",
    "bmp": "image/bmp",
    "tiff": "image/tiff",
    "gif": "image/gif",
    "ico": "image/vnd.microsoft.icon",
    "psd": "image/vnd.adobe.photoshop",
    "svg": "image/svg+xml",
}
PNG_MAGIC: Final = b"\x89PNG\r\n\x1a\n"
_SVG_SNIFF_BYTES: Final = 4096


def sniff_format(data: bytes) -> str:
    """Name the image format from magic numbers only, never trusting filenames or content types."""
    if not data:
        raise EmptyImageError("The uploaded file is empty.")
    head = bytes(data[:32])
    if head.startswith(PNG_MAGIC):
        return "png"
    if head.startswith(b"\xff\xd8\xff"):
        return "jpeg"
    if head[:6] in (b"GIF87a", b"GIF89a"):
        return "gif"
    if head[:4] == b"RIFF" and head[8:12] == b"WEBP":
        return "webp"
    if head[:2] == b"BM" and len(head) >= 26:
        return "bmp"
    if head[:4] in (b"II*\x00", b"MM\x00*", b"II+\x00", b"MM\x00+"):
        return "tiff"
    if head[:4] == b"\x00\x00\x01\x00" and len(head) >= 6 and struct.unpack_from("<H", head, 4)[0] > 0:
        return "ico"
    if head[:4] == b"8BPS":
        return "psd"
    if _looks_like_svg(bytes(data[:_SVG_SNIFF_BYTES])):
        return "svg"
    raise UnsupportedFormatError(
        "The file is not an image format we can read (PNG, JPEG, WebP, BMP, TIFF, GIF, ICO, PSD or SVG).",
        magic=head[:8].hex(),
    )


def _looks_like_svg(head: bytes) -> bool:
    """True when the first element of an XML text (after prolog, comments, doctype) is <svg>."""
    from ai_service.imaging.svg import looks_like_svg

    return looks_like_svg(head)


def decode_image(
    data: bytes,
    *,
    max_pixels: int = DEFAULT_MAX_PIXELS,
    target_size: tuple[int, int] | None = None,
    svg_size: tuple[int, int] | None = None,
    layer: str | None = None,
    layers: str = "merged",
) -> Image.Image:
    """Turn uploaded bytes into a loaded, upright, sRGB PIL image in L/LA/RGB/RGBA, or a specific error.

    `target_size` is the size the caller will resize to (JPEGs decode at a reduced scale still >= it, SVGs
    render just covering it); `svg_size` renders an SVG at exactly that size. `info["source_size"]` always
    holds the full upright size of the original (intrinsic size for SVG), whatever was decoded; rasters
    also carry `info["exif_orientation"]` (read once here, so callers need not parse the upload again).
    `layer` / `layers` pick a PSD's layer or its visible layers (ai_service/imaging/psd.py); other formats have
    one layer, so `layer` there is a LayerNotFoundError.
    """
    fmt = sniff_format(data)
    if layer is not None and fmt != "psd":
        raise LayerNotFoundError(f"`layer` picks a layer of a PSD file; this is a {fmt.upper()} image.", format=fmt)
    if fmt == "svg":
        from ai_service.imaging.svg import rasterize_svg

        return rasterize_svg(data, size=svg_size, cover=target_size, max_pixels=max_pixels)
    if fmt == "psd":
        from ai_service.imaging.psd import decode_psd

        return decode_psd(data, max_pixels=max_pixels, layer=layer, layers=layers)
    if fmt == "png":
        check_png_structure(data)
    elif fmt == "ico":
        check_ico_entries(data, max_pixels)
    try:
        im = open_raster(data, fmt, max_pixels)
        header_size_px = im.size
        if fmt == "jpeg" and target_size is not None:
            apply_draft(im, target_size)  # JPEG EXIF lives in APP1, readable before the pixels
        load_pixels(im)  # before any getexif(): for PNG that would load (and swallow errors) itself
        orientation = exif_orientation(im)
        width, height = header_size_px
        full_size = (height, width) if orientation in TRANSPOSING_ORIENTATIONS else (width, height)
    except CorruptImageError:
        if fmt != "tiff":
            raise
        im = decode_tiff_fallback(data, max_pixels)
        orientation, full_size = exif_orientation(im), im.size
    if is_deep_color(im, data, fmt):
        im = reload_deep_color(im, data)
    if orientation != 1:
        im = apply_exif_orientation(im)
    im = normalize_mode(to_srgb(im))
    im.info["source_size"] = full_size
    im.info["exif_orientation"] = orientation
    return im


def _plugin(fmt: str) -> type[ImageFile.ImageFile]:
    """The Pillow ImageFile class for one of our raster formats (instantiated directly, see open_raster)."""
    from PIL import (
        BmpImagePlugin,
        GifImagePlugin,
        IcoImagePlugin,
        JpegImagePlugin,
        PngImagePlugin,
        TiffImagePlugin,
        WebPImagePlugin,
    )

    return {
        "png": PngImagePlugin.PngImageFile,
        "jpeg": JpegImagePlugin.JpegImageFile,
        "webp": WebPImagePlugin.WebPImageFile,
        "bmp": BmpImagePlugin.BmpImageFile,
        "tiff": TiffImagePlugin.TiffImageFile,
        "gif": GifImagePlugin.GifImageFile,
        "ico": IcoImagePlugin.IcoImageFile,
    }[fmt]


_OPEN_ERRORS: Final = (
    UnidentifiedImageError,
    SyntaxError,
    OSError,
    ValueError,
    EOFError,
    struct.error,
    IndexError,
    KeyError,
    TypeError,
    ZeroDivisionError,
    MemoryError,
    zlib.error,
)


def open_raster(data: bytes, fmt: str, max_pixels: int = DEFAULT_MAX_PIXELS) -> ImageFile.ImageFile:
    """Open (header only) with the one Pillow plugin the magic numbers named; our pixel limit, not Pillow's global."""
    hw, hh = header_size(data, fmt)
    if hw * hh > max_pixels:
        check_pixel_limit((hw, hh), max_pixels)
    try:
        im = _plugin(fmt)(io.BytesIO(data))
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
        raise ImageTooLargeError("The image has too many pixels.", format=fmt) from exc
    except _OPEN_ERRORS as exc:
        raise CorruptImageError(
            f"The {fmt.upper()} file is damaged or truncated and cannot be read.", format=fmt, reason=str(exc)[:200]
        ) from exc
    check_pixel_limit(im.size, max_pixels)
    return im


def header_size(data: bytes, fmt: str) -> tuple[int, int]:
    """Canvas size read straight from PNG/GIF headers (before Pillow sees them); (1, 1) when not known here."""
    if fmt == "png" and len(data) >= 33 and data[12:16] == b"IHDR":
        return struct.unpack_from(">II", data, 16)
    if fmt == "gif" and len(data) >= 13:
        return struct.unpack_from("<HH", data, 6)
    return (1, 1)


def check_pixel_limit(size: tuple[int, int], max_pixels: int) -> None:
    """Refuse decompression bombs from the header size before any pixel memory is allocated."""
    width, height = size
    if width <= 0 or height <= 0:
        raise CorruptImageError("The image header declares an empty canvas.", width=width, height=height)
    if width * height > max_pixels:
        raise ImageTooLargeError(
            f"The image is {width}x{height} = {width * height:,} pixels; the limit is {max_pixels:,}.",
            width=width,
            height=height,
            max_pixels=max_pixels,
        )


def load_pixels(im: Image.Image) -> None:
    """Decode the pixel data (first frame/page), translating every decoder failure into CorruptImageError."""
    try:
        im.seek(0)
        im.load()
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
        raise ImageTooLargeError("The image has too many pixels.") from exc
    except ImageDecodeError:
        raise
    except _OPEN_ERRORS as exc:
        fmt = (im.format or "image").upper()
        raise CorruptImageError(
            f"The {fmt} file is damaged or truncated and cannot be read.", reason=str(exc)[:200]
        ) from exc


#: Largest decoded first page the tifffile fallback may allocate (float64 RGB at 40 MP would be ~1 GB).
MAX_TIFF_FALLBACK_BYTES: Final = 256 * 1024 * 1024


def decode_tiff_fallback(data: bytes, max_pixels: int) -> Image.Image:
    """First page of TIFFs Pillow cannot read (float/64-bit/planar scientific files) via tifffile."""
    import tifffile

    try:
        with tifffile.TiffFile(io.BytesIO(data)) as tif:
            page = tif.pages.first
            check_pixel_limit((int(page.imagewidth), int(page.imagelength)), max_pixels)
            if int(page.samplesperpixel) > 4 or int(page.imagedepth) > 1:
                raise UnsupportedFormatError(
                    "TIFF files with more than 4 samples per pixel or 3-D pages are not supported.", format="tiff"
                )
            if int(page.nbytes) > MAX_TIFF_FALLBACK_BYTES:
                raise ImageTooLargeError(
                    "The TIFF page is too large to decode.", format="tiff", nbytes=int(page.nbytes)
                )
            arr = np.asarray(page.asarray())
            shape = (int(page.imagelength), int(page.imagewidth))
            if "S" in str(page.axes) and str(page.axes).index("S") == 0:
                arr = np.moveaxis(arr, 0, -1)
            if arr.ndim == 2:
                arr = arr[..., None]
            if arr.ndim != 3 or arr.shape[:2] != shape or arr.shape[2] not in MODE_BY_CHANNELS:
                raise CorruptImageError("The TIFF page's layout is inconsistent.", format="tiff", shape=list(arr.shape))
            pixels = _rescale_to_uint8(arr)
    except ImageDecodeError:
        raise
    except Exception as exc:  # noqa: BLE001 - tifffile/codec failures of every kind
        raise CorruptImageError(
            "The TIFF file is damaged or uses an encoding we cannot read.", format="tiff", reason=str(exc)[:200]
        ) from exc
    mode = MODE_BY_CHANNELS[pixels.shape[2]]
    return Image.fromarray(pixels[..., 0] if mode == "L" else np.ascontiguousarray(pixels), mode)


#: Pillow mode of an HWC uint8 array by its channel count.
MODE_BY_CHANNELS: Final = {1: "L", 2: "LA", 3: "RGB", 4: "RGBA"}


def _rescale_to_uint8(arr: np.ndarray) -> np.ndarray:
    """File samples of any depth to 8 bits: ints by their type's range, floats by the range they use (see below)."""
    if arr.dtype == np.uint8:
        return arr
    if arr.dtype == np.bool_:
        return arr.astype(np.uint8) * 255
    if np.issubdtype(arr.dtype, np.unsignedinteger):
        top = float(np.iinfo(arr.dtype).max)
        return np.rint(arr.astype(np.float64) * (255.0 / top)).astype(np.uint8)
    return _rescale_float_to_uint8(arr.astype(np.float64))


def _rescale_float_to_uint8(arr: np.ndarray) -> np.ndarray:
    """[0,1] data is scaled by 255, [0,255] kept, anything else min-max stretched; NaN/inf become 0."""
    arr = np.nan_to_num(arr, nan=0.0, posinf=0.0, neginf=0.0)
    lo, hi = (float(arr.min()), float(arr.max())) if arr.size else (0.0, 0.0)
    if lo >= 0.0 and hi <= 1.0:
        scaled = arr * 255.0
    elif lo >= 0.0 and hi <= 255.0:
        scaled = arr
    else:
        scaled = (arr - lo) * (255.0 / (hi - lo)) if hi > lo else np.zeros_like(arr)
    return np.clip(np.rint(scaled), 0, 255).astype(np.uint8)


def is_deep_color(im: Image.Image, data: bytes, fmt: str) -> bool:
    """True for 16-bit-per-channel RGB(A) PNG/TIFF, which Pillow truncates to the high byte instead of rounding."""
    if im.mode not in ("RGB", "RGBA"):
        return False
    if fmt == "png":
        return data[24] == 16 and data[25] in (2, 6)
    if fmt == "tiff":
        bits = getattr(im, "tag_v2", {}).get(258, ())
        return bool(bits) and all(b == 16 for b in (bits if isinstance(bits, tuple) else (bits,)))
    return False


def reload_deep_color(im: Image.Image, data: bytes) -> Image.Image:
    """Decode 16-bit color with OpenCV and round v/257 to 8 bits, keeping Pillow's metadata (EXIF, ICC)."""
    import cv2

    arr = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_UNCHANGED)
    if arr is None or arr.dtype != np.uint16 or arr.ndim != 3 or arr.shape[:2] != im.size[::-1]:
        return im
    order = [2, 1, 0, 3] if arr.shape[2] == 4 else [2, 1, 0]
    eight = ((arr[..., order].astype(np.uint32) + 128) // 257).astype(np.uint8)
    out = Image.fromarray(eight, "RGBA" if arr.shape[2] == 4 else "RGB")
    out.info = dict(im.info)
    exif = im.getexif()
    if exif:
        out.getexif().update(exif)
    return out


EXIF_ORIENTATION_TAG: Final = 0x0112
#: EXIF orientations that swap width and height (90° and 270° rotations, mirrored or not).
TRANSPOSING_ORIENTATIONS: Final = (5, 6, 7, 8)


def exif_orientation(im: Image.Image) -> int:
    """Read the EXIF orientation (1 = upright) without failing on malformed EXIF blocks."""
    try:
        value = im.getexif().get(EXIF_ORIENTATION_TAG, 1)
        return int(value) if 1 <= int(value) <= 8 else 1
    except Exception:  # noqa: BLE001 - a broken EXIF block must not make a good image undecodable
        return 1


def apply_draft(im: ImageFile.ImageFile, target_size: tuple[int, int]) -> None:
    """Ask libjpeg for a 1/2, 1/4 or 1/8 scale decode that is still at least target_size (after rotation)."""
    w, h = target_size
    if w <= 0 or h <= 0:
        return
    if exif_orientation(im) in TRANSPOSING_ORIENTATIONS:
        w, h = h, w
    try:
        im.draft(None, (w, h))
    except Exception:  # noqa: BLE001 - draft is an optimization only
        return


def apply_exif_orientation(im: Image.Image) -> Image.Image:
    """Rotate/flip so the pixels are upright, as every viewer shows them; broken EXIF is ignored."""
    if exif_orientation(im) == 1:
        return im
    try:
        return ImageOps.exif_transpose(im)
    except Exception:  # noqa: BLE001
        return im


SRGB_PROFILE: Final = ImageCms.createProfile("sRGB")


@lru_cache(maxsize=32)
def _icc_transform(icc: bytes, mode: str) -> ImageCms.ImageCmsTransform | None:
    """Build (once per distinct profile) the transform from an embedded ICC profile to sRGB."""
    try:
        src = ImageCms.ImageCmsProfile(io.BytesIO(icc))
        if mode == "RGB" and "srgb" in (ImageCms.getProfileDescription(src) or "").lower():
            return None
        return ImageCms.buildTransform(src, SRGB_PROFILE, mode, "RGB", renderingIntent=ImageCms.Intent.PERCEPTUAL)
    except Exception:  # noqa: BLE001 - an unusable profile means "assume sRGB"
        return None


def to_srgb(im: Image.Image) -> Image.Image:
    """Convert color through an embedded ICC profile to sRGB (RGB/RGBA/CMYK); alpha is carried over untouched."""
    icc = im.info.get("icc_profile")
    if not icc or im.mode not in ("RGB", "RGBA", "CMYK"):
        return im
    color_mode = "RGB" if im.mode == "RGBA" else im.mode
    transform = _icc_transform(bytes(icc), color_mode)
    if transform is None:
        return im
    color = im.convert("RGB") if im.mode == "RGBA" else im
    try:
        out = ImageCms.applyTransform(color, transform)
    except Exception:  # noqa: BLE001
        return im
    if out is None:
        return im
    if im.mode == "RGBA":
        out.putalpha(im.getchannel("A"))
    out.info = {k: v for k, v in im.info.items() if k != "icc_profile"}
    return out


def normalize_mode(im: Image.Image) -> Image.Image:
    """Bring any Pillow mode to L, LA, RGB or RGBA with values correctly scaled to 8 bits."""
    mode = im.mode
    if mode in ("L", "RGB") and "transparency" in im.info:  # PNG tRNS color key on gray / truecolor
        return im.convert("LA" if mode == "L" else "RGBA")
    if mode in NORMAL_MODES:
        return im
    if mode == "1":
        return im.convert("L")
    if mode in ("P", "PA"):
        has_alpha = mode == "PA" or "transparency" in im.info or (im.palette is not None and im.palette.mode == "RGBA")
        return im.convert("RGBA" if has_alpha else "RGB")
    if mode in ("La",):
        return im.convert("LA")
    if mode in ("RGBa",):
        return im.convert("RGBA")
    if mode.startswith("I;16") or mode == "I":
        return sixteen_bit_to_l(im)
    if mode == "F":
        return float_to_l(im)
    if mode == "LAB":
        return lab_image_to_rgb(im)
    if mode == "CMYK":
        return im.convert("RGB")
    try:
        return im.convert("RGB")
    except (ValueError, OSError) as exc:
        raise UnsupportedFormatError(f"Images in pixel mode {mode} are not supported.", mode=mode) from exc


def sixteen_bit_to_l(im: Image.Image) -> Image.Image:
    """Scale 16-bit (I;16*, I holding 0..65535) gray to 8 bits by rounding v/257, not by clipping at 255."""
    arr = np.asarray(im).astype(np.int64)
    arr = np.clip(arr, 0, 65535)
    out = ((arr + 128) // 257).astype(np.uint8)
    return Image.fromarray(out)


def float_to_l(im: Image.Image) -> Image.Image:
    """Map float gray to 8 bits: [0,1] data is scaled by 255, [0,255] kept, anything else min-max stretched."""
    return Image.fromarray(_rescale_float_to_uint8(np.asarray(im, dtype=np.float64)))


def lab_image_to_rgb(im: Image.Image) -> Image.Image:
    """Convert a CIE LAB image (e.g. from TIFF) to sRGB through LittleCMS."""
    transform = ImageCms.buildTransformFromOpenProfiles(ImageCms.createProfile("LAB"), SRGB_PROFILE, "LAB", "RGB")
    return ImageCms.applyTransform(im, transform)


def check_png_structure(data: bytes) -> None:
    """Walk the PNG chunks verifying lengths and CRCs and that IEND is reached (truncation, bit rot)."""
    pos = len(PNG_MAGIC)
    end = len(data)
    view = memoryview(data)
    first = True
    while True:
        if pos + 12 > end:
            raise CorruptImageError("The PNG file is truncated (no IEND chunk).", format="png", offset=pos)
        length, ctype = struct.unpack_from(">I4s", data, pos)
        if length > 0x7FFFFFFF or pos + 12 + length > end:
            raise CorruptImageError(
                "The PNG file is truncated (a chunk runs past the end of the file).",
                format="png",
                chunk=ctype.decode("latin-1"),
                offset=pos,
            )
        if first and ctype != b"IHDR":
            raise CorruptImageError("The PNG file does not start with an IHDR chunk.", format="png")
        first = False
        crc_expected = struct.unpack_from(">I", data, pos + 8 + length)[0]
        if zlib.crc32(view[pos + 4 : pos + 8 + length]) != crc_expected:
            raise CorruptImageError(
                "The PNG file is damaged (a chunk checksum does not match).",
                format="png",
                chunk=ctype.decode("latin-1"),
                offset=pos,
            )
        pos += 12 + length
        if ctype == b"IEND":
            return


def check_ico_entries(data: bytes, max_pixels: int) -> None:
    """Check every PNG embedded in an ICO against the pixel limit (the ICO directory cannot say its size)."""
    if len(data) < 6:
        raise CorruptImageError("The ICO file is truncated.", format="ico")
    count = struct.unpack_from("<H", data, 4)[0]
    if len(data) < 6 + 16 * count:
        raise CorruptImageError("The ICO file is truncated (directory incomplete).", format="ico")
    for i in range(count):
        size, offset = struct.unpack_from("<II", data, 6 + 16 * i + 8)
        if offset + min(size, 24) > len(data):
            raise CorruptImageError("The ICO file is truncated (an icon lies past the end).", format="ico")
        if data[offset : offset + 8] == PNG_MAGIC and offset + 24 <= len(data):
            check_pixel_limit(struct.unpack_from(">II", data, offset + 16), max_pixels)


#: Formats encode_image writes, with the modes each can hold.
ENCODABLE: Final = {"png", "jpeg", "webp", "bmp", "tiff", "gif"}


def encode_image(im: Image.Image, fmt: str = "png", *, quality: int = 90) -> bytes:
    """Encode to png/jpeg/webp/bmp/tiff/gif; JPEG and BMP drop alpha by compositing onto white."""
    fmt = fmt.lower().replace("jpg", "jpeg")
    if fmt not in ENCODABLE:
        raise ValueError(f"Cannot encode format {fmt!r}; choose one of {sorted(ENCODABLE)}.")
    if not 1 <= quality <= 100:
        raise ValueError("quality must be between 1 and 100.")
    im = normalize_mode(im)
    if fmt in ("jpeg", "bmp") and im.mode in ("LA", "RGBA"):
        from ai_service.imaging.alpha import flatten_alpha

        im = flatten_alpha(im)
    buf = io.BytesIO()
    options: dict[str, object] = {}
    if fmt == "jpeg":
        options = {"quality": quality, "optimize": False}
    elif fmt == "webp":
        options = {"quality": quality, "lossless": quality == 100, "exact": quality == 100, "method": 4}
    elif fmt == "png":
        options = {"compress_level": 6}
    im.save(buf, PIL_FORMATS.get(fmt, fmt.upper()), **options)
    return buf.getvalue()


def mime_type(fmt: str) -> str:
    """Content type for one of our format names."""
    return MIME_TYPES[fmt]
