"""Shared fixtures in the flaskr style: an app on a temporary home, its test client, digit images."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from ai_service import create_app
from ai_service.server.process import configure_process
from ai_service.settings import load_settings


@pytest.fixture(scope="session", autouse=True)
def serving_process() -> None:
    """Test what production runs: the switches post_fork sets once per worker (literal multipart parser, short
    GIL switch interval, torch threads), set once per session, since creating an app no longer sets them."""
    configure_process(load_settings())


@pytest.fixture
def home(tmp_path: Path) -> Path:
    """A fresh AI_SERVICE_HOME per test so logs and data never touch the checkout."""
    return tmp_path / "home"


@pytest.fixture
def app(home: Path):
    app = create_app({"TESTING": True, "home": str(home), "log_level": "DEBUG"})
    yield app
    app.extensions["ai_service"].close()  # flush the history writer, stop inference threads


@pytest.fixture
def client(app):
    return app.test_client()


@pytest.fixture(scope="session")
def digits_split():
    from ai_service.models.builtin.digits_training import load_digits_split

    return load_digits_split()


def encode(image: Image.Image, fmt: str = "PNG", **params) -> bytes:
    """Serialize a PIL image the way a client would upload it."""
    buffer = io.BytesIO()
    image.save(buffer, format=fmt, **params)
    return buffer.getvalue()


def digit_variants(pixels: np.ndarray) -> dict[str, tuple[bytes, str]]:
    """One sklearn digit as the uploads users really send: gray, color, alpha, inverted, large, JPEG."""
    from ai_service.models.builtin.digits_training import render_digit

    gray = render_digit(pixels, 64)
    inverted = Image.eval(gray, lambda v: 255 - v)
    color = Image.merge("RGB", (gray, Image.eval(gray, lambda v: v // 2), Image.new("L", gray.size, 40)))
    ink_on_clear = Image.merge("RGBA", (Image.new("L", gray.size, 20),) * 3 + (gray,))
    large = render_digit(pixels, 1200, Image.Resampling.BICUBIC)
    return {
        "gray.png": (encode(gray), "image/png"),
        "inverted.png": (encode(inverted), "image/png"),
        "color.jpg": (encode(color, "JPEG", quality=90), "image/jpeg"),
        "alpha.png": (encode(ink_on_clear), "image/png"),
        "large-inverted.jpg": (
            encode(Image.eval(large, lambda v: 255 - v).convert("RGB"), "JPEG", quality=85),
            "image/jpeg",
        ),
    }
