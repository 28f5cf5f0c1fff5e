import hashlib

import numpy as np
import pytest
import torch
from conftest import digit_variants
from PIL import Image

from ai_service.models.base import ModelOptions
from ai_service.models.builtin.digits import WEIGHTS_PATH, DigitsModel, normalize_digit
from ai_service.models.builtin.digits_training import render_digit, train_digits


@pytest.fixture(scope="module")
def model():
    model = DigitsModel()
    model.load(torch.device("cpu"))
    return model


def accuracy(model, images, labels) -> float:
    options = ModelOptions(top_k=1)
    batch = model.preprocess(images, options)
    results = model.postprocess(model.forward(batch.tensor), batch.states(), options)
    predicted = [int(r["predictions"][0]["label"]) for r in results]
    return float(np.mean(np.asarray(predicted) == labels))


def test_committed_weights_are_small():
    assert WEIGHTS_PATH.stat().st_size < 300_000


def test_held_out_accuracy_at_least_97_percent(model, digits_split):
    images = [Image.fromarray(p, mode="L") for p in digits_split.test_images]
    assert accuracy(model, images, digits_split.test_labels) >= 0.97


def test_held_out_accuracy_on_realistic_uploads(model, digits_split):
    """The same held-out digits as users upload them: color, alpha, inverted, large, JPEG."""
    subset = slice(0, 120)
    labels = digits_split.test_labels[subset]
    for name in ("gray.png", "inverted.png", "color.jpg", "alpha.png", "large-inverted.jpg"):
        from ai_service.imaging.io import decode_image

        images = [decode_image(digit_variants(p)[name][0]) for p in digits_split.test_images[subset]]
        assert accuracy(model, images, labels) >= 0.95, name


def test_normalization_is_polarity_and_alpha_invariant(digits_split):
    pixels = digits_split.test_images[0]
    reference = normalize_digit(render_digit(pixels, 64))
    inverted = normalize_digit(Image.eval(render_digit(pixels, 64), lambda v: 255 - v))
    dark_on_clear = Image.merge("LA", (Image.new("L", (64, 64), 0), render_digit(pixels, 64)))
    light_on_clear = Image.merge("LA", (Image.new("L", (64, 64), 255), render_digit(pixels, 64)))
    for variant in (inverted, normalize_digit(dark_on_clear), normalize_digit(light_on_clear)):
        assert np.abs(variant - reference).mean() < 0.03
    assert reference.shape == (28, 28) and 0 <= reference.min() and reference.max() <= 1


def test_blank_and_tiny_images_do_not_crash():
    assert normalize_digit(Image.new("L", (50, 50), 255)).max() == 0
    assert normalize_digit(Image.new("RGBA", (10, 10), (0, 0, 0, 0))).max() == 0
    dot = Image.new("L", (1, 1), 255)
    assert normalize_digit(dot).shape == (28, 28)
    odd = Image.new("P", (5, 30))
    assert normalize_digit(odd).shape == (28, 28)


def test_training_is_deterministic(tmp_path):
    first = train_digits(tmp_path / "a.pt", epochs=1, copies=0)
    second = train_digits(tmp_path / "b.pt", epochs=1, copies=0)
    assert first["sha256"] == second["sha256"]
    assert hashlib.sha256((tmp_path / "a.pt").read_bytes()).hexdigest() == first["sha256"]


def test_cli_train_digits_writes_loadable_weights(tmp_path, capsys):
    from ai_service.cli import main

    output = tmp_path / "digits.pt"
    assert main(["train-digits", "--output", str(output), "--epochs", "1", "--copies", "0"]) == 0
    assert '"held_out_accuracy"' in capsys.readouterr().out
    state = torch.load(output, weights_only=True)
    assert set(state) == set(torch.load(WEIGHTS_PATH, weights_only=True))


def reference_normalize_digit(image: Image.Image) -> np.ndarray:
    """The straightforward version the committed weights were trained with (np.median, np.clip, np.roll)."""
    if max(image.size) > 256:
        image = image.copy()
        image.thumbnail((256, 256), Image.Resampling.BOX)
    if image.mode not in ("L", "LA", "RGB", "RGBA"):
        image = image.convert("RGBA" if "transparency" in image.info or "A" in image.getbands() else "RGB")
    alpha = np.asarray(image.getchannel("A"), dtype=np.float32) / 255.0 if image.mode in ("LA", "RGBA") else None
    gray = np.asarray(image.convert("L"), dtype=np.float32)
    if alpha is not None:
        coverage = float(alpha.sum())
        ink_is_dark = coverage == 0 or float((gray * alpha).sum()) / coverage < 128
        gray = gray * alpha + (255.0 if ink_is_dark else 0.0) * (1.0 - alpha)
    background = float(np.median(np.concatenate([gray[0], gray[-1], gray[:, 0], gray[:, -1]])))
    if background > 127:
        gray, background = 255.0 - gray, 255.0 - background
    ink = np.clip(gray - background, 0.0, None)
    canvas = np.zeros((28, 28), dtype=np.float32)
    if float(ink.max()) < 1.0:
        return canvas
    ink /= float(ink.max())
    rows, cols = np.nonzero(ink > 0.2)
    crop = ink[rows.min() : rows.max() + 1, cols.min() : cols.max() + 1]
    height, width = crop.shape
    scale = 20 / max(height, width)
    new_w, new_h = max(1, round(width * scale)), max(1, round(height * scale))
    resized = np.asarray(Image.fromarray(crop.astype(np.float32)).resize((new_w, new_h), Image.Resampling.BILINEAR))
    top, left = (28 - new_h) // 2, (28 - new_w) // 2
    canvas[top : top + new_h, left : left + new_w] = np.clip(resized, 0.0, 1.0)
    mass = float(canvas.sum())
    ys, xs = np.indices(canvas.shape)
    shift_y = int(np.clip(round(13.5 - float((ys * canvas).sum()) / mass), -top, 28 - new_h - top))
    shift_x = int(np.clip(round(13.5 - float((xs * canvas).sum()) / mass), -left, 28 - new_w - left))
    return np.roll(canvas, (shift_y, shift_x), axis=(0, 1))


def test_fast_normalization_matches_the_training_reference_bit_for_bit(digits_split):
    """The hot-path rewrite must feed the network exactly what it was trained on."""
    rng = np.random.default_rng(3)
    images = []
    for pixels in digits_split.test_images[:150]:
        plain = render_digit(pixels, int(rng.integers(8, 96)), angle=float(rng.uniform(-12, 12)))
        images += [
            Image.fromarray(pixels, mode="L"),
            plain,
            plain.resize((300, 280)),
            Image.eval(plain, lambda v: 255 - v).convert("RGB"),
            Image.merge("RGBA", (plain, plain, plain, plain)),
            Image.merge("LA", (Image.new("L", plain.size, 30), plain)),
            plain.convert("P"),
        ]
    images += [Image.new("L", (30, 30), 0), Image.new("RGBA", (30, 31), (0, 0, 0, 0)), Image.new("L", (1, 1), 255)]
    for image in images:
        assert np.array_equal(normalize_digit(image), reference_normalize_digit(image)), image
