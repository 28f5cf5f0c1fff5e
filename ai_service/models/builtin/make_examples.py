"""The example inputs the upload page offers for each built-in model, drawn from code (nothing is downloaded).

`python -m ai_service.models.builtin.make_examples [folder]` writes them (by default into the package's
examples/ folder, where they are committed and shipped in the wheel). Everything is fixed: the digits come
from scikit-learn's bundled dataset by index, the pictures are drawn with Pillow from a seeded generator, so
the same files come out on every machine (tests/test_examples.py compares the pixels with the shipped ones).
"""
from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFilter

EXAMPLES_DIR = Path(__file__).resolve().parent / "examples"
SEED = 17
JPEG_QUALITY = 88
#: The held-out digits shown, by (label, rank among that label's test samples).
DIGITS = ((7, 0), (3, 1))

#: The composed digit scenes shown (seed, size, transparent), picked for several digits on a busy photo / on alpha.
SCENES: dict[str, tuple[int, tuple[int, int], bool]] = {
    "digit-scene.jpg": (35, (320, 240), False),
    "digit-sticker.png": (12, (224, 144), True),
}

#: Which examples each built-in model offers, by file name (the model's purpose in one picture or two).
MODEL_EXAMPLES: dict[str, tuple[str, ...]] = {
    "digits": ("handwritten-7.png", "handwritten-3.png"),
    "digits-detect": ("digit-scene.jpg", "digit-sticker.png"),
    "digits-segment": ("digit-scene.jpg", "digit-sticker.png"),
    "edges": ("street-scene.jpg",),
    "remove-bg": ("bottle-on-white.jpg",),
    "upscale-2x": ("small-landscape.jpg", "pixel-sprite.png"),
    "upscale-4x": ("pixel-sprite.png", "small-landscape.jpg"),
}


def _rng() -> np.random.Generator:
    return np.random.default_rng(SEED)


def _grain(image: Image.Image, amount: float, rng: np.random.Generator) -> Image.Image:
    """Sensor-like noise so that a drawn scene reads as a photo (and gives an edge detector texture to skip)."""
    pixels = np.asarray(image, dtype=np.float32)
    noisy = pixels + rng.normal(0.0, amount, pixels.shape[:2])[..., None]
    return Image.fromarray(np.clip(np.rint(noisy), 0, 255).astype(np.uint8), image.mode)


def _vertical_gradient(size: tuple[int, int], top: tuple[int, int, int], bottom: tuple[int, int, int]) -> Image.Image:
    width, height = size
    t = np.linspace(0.0, 1.0, height, dtype=np.float32)[:, None, None]
    rows = (1 - t) * np.array(top, np.float32) + t * np.array(bottom, np.float32)
    return Image.fromarray(np.rint(np.broadcast_to(rows, (height, width, 3))).astype(np.uint8), "RGB")


def handwritten_digit(label: int, rank: int) -> Image.Image:
    """A held-out scikit-learn digit (never trained on) as dark ink on paper, 128×128, softly enlarged."""
    from ai_service.models.builtin.digits_training import load_digits_split

    split = load_digits_split()
    index = int(np.flatnonzero(split.test_labels == label)[rank])
    ink = Image.fromarray(split.test_images[index], "L").resize((96, 96), Image.Resampling.BICUBIC)
    paper = Image.new("L", (128, 128), 255)
    paper.paste(Image.eval(ink, lambda v: 255 - int(v * 0.85)), (16, 16))
    return _grain(paper.convert("RGB"), 2.0, _rng()).convert("L")


def street_scene(size: tuple[int, int] = (320, 240)) -> Image.Image:
    """A photo-like scene with strong outlines and soft gradients: sky, sun, hills, a house, a tree, a road."""
    width, height = size
    s = width / 320
    image = _vertical_gradient(size, (120, 170, 225), (205, 225, 240))
    draw = ImageDraw.Draw(image)
    draw.ellipse([250 * s, 22 * s, 290 * s, 62 * s], fill=(255, 236, 170))
    hills = [(0, 150), (60, 118), (120, 140), (190, 105), (260, 132), (320, 115), (320, 240), (0, 240)]
    draw.polygon([(x * s, y * s) for x, y in hills], fill=(96, 140, 84))
    draw.rectangle([0, 175 * s, width, height], fill=(112, 158, 92))
    draw.polygon([(130 * s, 240 * s), (165 * s, 175 * s), (180 * s, 175 * s), (230 * s, 240 * s)], fill=(128, 124, 118))
    for y in range(190, 240, 14):
        draw.line([(170 * s + (y - 175) * 0.35 * s, y * s), (171 * s + (y - 175) * 0.45 * s, (y + 6) * s)],
                  fill=(235, 232, 220), width=max(1, round(2 * s)))
    draw.rectangle([40 * s, 120 * s, 120 * s, 182 * s], fill=(222, 196, 160), outline=(120, 90, 70))
    draw.polygon([(32 * s, 122 * s), (80 * s, 88 * s), (128 * s, 122 * s)], fill=(168, 64, 52))
    for x in (52, 92):
        draw.rectangle([x * s, 134 * s, (x + 18) * s, 152 * s], fill=(92, 128, 170), outline=(250, 250, 250))
    draw.rectangle([72 * s, 150 * s, 88 * s, 182 * s], fill=(110, 72, 48))
    draw.rectangle([262 * s, 130 * s, 270 * s, 182 * s], fill=(100, 70, 45))
    draw.ellipse([238 * s, 92 * s, 294 * s, 148 * s], fill=(52, 110, 58))
    draw.ellipse([250 * s, 80 * s, 284 * s, 118 * s], fill=(64, 126, 66))
    for cx, cy in ((60, 40), (150, 30)):
        for dx, r in ((0, 12), (14, 16), (30, 11)):
            draw.ellipse([(cx + dx - r) * s, (cy - r * 0.7) * s, (cx + dx + r) * s, (cy + r * 0.7) * s],
                         fill=(248, 250, 252))
    image = image.filter(ImageFilter.GaussianBlur(0.7 * s))
    return _grain(image, 3.0, _rng())


def bottle_on_white(size: tuple[int, int] = (256, 256)) -> Image.Image:
    """A product shot: a shaded, labelled bottle on a studio-white background (no holes, no cast shadow)."""
    width, height = size
    scale = 4  # drawn large and reduced, for anti-aliased outlines like a photo's
    big = (width * scale, height * scale)
    mask = Image.new("L", big, 0)
    draw = ImageDraw.Draw(mask)
    cx = big[0] // 2
    draw.rounded_rectangle([cx - 170, 330, cx + 170, 960], radius=70, fill=255)
    draw.polygon([(cx - 170, 400), (cx - 60, 230), (cx + 60, 230), (cx + 170, 400)], fill=255)
    draw.rectangle([cx - 60, 150, cx + 60, 240], fill=255)
    draw.rounded_rectangle([cx - 72, 80, cx + 72, 170], radius=14, fill=255)
    x = (np.arange(big[0], dtype=np.float32) - cx) / 170
    shade = np.clip(1.0 - 0.55 * x ** 2 + 0.45 * np.exp(-((x + 0.45) / 0.12) ** 2), 0.35, 1.4)[None, :, None]
    body = np.array((24, 120, 112), np.float32)[None, None, :] * shade
    colors = np.broadcast_to(body, (big[1], big[0], 3)).copy()
    colors[80:170] = np.array((40, 44, 52), np.float32) * shade[0]  # the cap
    colors[520:760] = np.array((238, 232, 214), np.float32) * np.minimum(shade[0], 1.05)  # the label
    product = Image.fromarray(np.clip(np.rint(colors), 0, 255).astype(np.uint8), "RGB")
    label = ImageDraw.Draw(product)
    label.rectangle([cx - 170, 600, cx + 170, 640], fill=(200, 70, 50))
    for row, width in ((690, 120), (716, 80)):  # lettering, as bars (fonts differ between machines)
        label.rounded_rectangle([cx - width, row - 8, cx + width, row + 8], radius=8, fill=(40, 52, 60))
    canvas = Image.new("RGB", big, (255, 255, 255))
    canvas.paste(product, (0, 0), mask)
    return _grain(canvas.resize(size, Image.Resampling.LANCZOS), 1.5, _rng())


SPRITE = (
    ".......kk.......",
    ".......rr.......",
    "....kkkkkkkk....",
    "...kggggggggk...",
    "...kgwwggwwgk...",
    "...kgwkggwkgk...",
    "...kggggggggk...",
    "...kggkkkkggk...",
    "....kkkkkkkk....",
    "......kggk......",
    "..kkkkkkkkkkkk..",
    ".kgkbbbbbbbbkgk.",
    ".kgkbyybbrrbkgk.",
    ".kkkbbbbbbbbkkk.",
    "....kkkkkkkk....",
    "....kk....kk....",
)
SPRITE_COLORS = {"k": (36, 38, 56, 255), "g": (122, 204, 214, 255), "w": (250, 250, 250, 255),
                 "r": (226, 58, 52, 255), "b": (64, 96, 206, 255), "y": (250, 214, 64, 255), ".": (0, 0, 0, 0)}


def pixel_sprite() -> Image.Image:
    """A 16×16 pixel-art robot on transparency, drawn at 2× (32×32): tiny, hard-edged, with alpha."""
    pixels = np.array([[SPRITE_COLORS[c] for c in row] for row in SPRITE], dtype=np.uint8)
    return Image.fromarray(pixels, "RGBA").resize((32, 32), Image.Resampling.NEAREST)


def small_landscape() -> Image.Image:
    """The street scene as a 160×120 thumbnail: what an enlargement is for."""
    return street_scene((640, 480)).resize((160, 120), Image.Resampling.LANCZOS)


def digit_scene(seed: int, size: tuple[int, int], transparent: bool) -> Image.Image:
    """A composed scene of held-out digits (scenes.py): on a photo as a JPEG, or a partially transparent PNG."""
    from ai_service.models.builtin.scenes import compose_scene, digit_pool

    image = compose_scene(np.random.default_rng(seed), *digit_pool("test"), transparent=transparent, size=size).image
    if transparent:  # no hidden colors under clear pixels, as sticker files have them (and a small PNG)
        pixels = np.asarray(image).copy()
        pixels[pixels[..., 3] == 0] = 0
        image = Image.fromarray(pixels, "RGBA")
    return image


def _digit(label: int, rank: int) -> Callable[[], Image.Image]:
    return lambda: handwritten_digit(label, rank)


#: Every example file and how it is drawn.
GENERATORS: dict[str, Callable[[], Image.Image]] = {
    **{f"handwritten-{label}.png": _digit(label, rank) for label, rank in DIGITS},
    "street-scene.jpg": street_scene,
    "bottle-on-white.jpg": bottle_on_white,
    "small-landscape.jpg": small_landscape,
    "pixel-sprite.png": pixel_sprite,
    "digit-scene.jpg": lambda: digit_scene(*SCENES["digit-scene.jpg"]),
    "digit-sticker.png": lambda: digit_scene(*SCENES["digit-sticker.png"]),
}


def save(image: Image.Image, path: Path) -> None:
    if path.suffix == ".jpg":
        image.convert("RGB").save(path, "JPEG", quality=JPEG_QUALITY, optimize=True)
    else:
        image.save(path, "PNG", optimize=True)


def write_examples(folder: Path = EXAMPLES_DIR) -> list[Path]:
    """Draw every example into `folder`; returns the paths written."""
    folder.mkdir(parents=True, exist_ok=True)
    written = []
    for name, draw in GENERATORS.items():
        save(draw(), folder / name)
        written.append(folder / name)
    return written


def example_paths(model: str) -> tuple[Path, ...]:
    """The shipped example files of one built-in model."""
    return tuple(EXAMPLES_DIR / name for name in MODEL_EXAMPLES.get(model, ()))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("folder", nargs="?", type=Path, default=EXAMPLES_DIR)
    args = parser.parse_args(argv)
    for path in write_examples(args.folder):
        print(f"{path}  {path.stat().st_size:,} bytes")
    return 0


if __name__ == "__main__":
    sys.exit(main())
