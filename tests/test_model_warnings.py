"""Issue 17, defect 13: models respect what the input already says and say when an input is unlike their training.

- remove-bg on a PNG whose background is already transparent keeps its alpha: no holes in the subject, and no
  output pixel is ever more transparent than the input allowed;
- classifiers add a `warnings` entry (code `unfamiliar_input`) when the best label scores under MIN_CONFIDENCE or
  the normalized entropy is over MAX_ENTROPY: a real photo given to `digits` is flagged, real digits are not.
"""

from __future__ import annotations

import base64
import io
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import digit_variants, encode
from PIL import Image, ImageDraw

from ai_service.models import base
from ai_service.models.base import ModelOptions, top_k_predictions
from ai_service.models.builtin.background import RemoveBackgroundModel
from ai_service.models.builtin.digits import DigitsModel
from ai_service.schemas import PredictResponse

README = Path(__file__).resolve().parent.parent / "docs" / "models" / "digits.md"  # where the README's text went


def run(model, image: Image.Image, top_k: int = 3) -> dict:
    options = ModelOptions(top_k=top_k)
    batch = model.preprocess([image], options)
    (result,) = model.postprocess(model.forward(batch.tensor), batch.states(), options)
    return result


@pytest.fixture(scope="module")
def remove_bg():
    model = RemoveBackgroundModel()
    model.load(torch.device("cpu"))
    return model


@pytest.fixture(scope="module")
def digits():
    model = DigitsModel()
    model.load(torch.device("cpu"))
    return model


def cat_photo() -> Image.Image:
    """scikit-image's cat (Chelsea): a real photo, nothing like a handwritten digit."""
    data = pytest.importorskip("skimage.data")
    return Image.fromarray(data.chelsea())


# remove-bg and existing transparency


def cutout(clear_rgb=(0, 0, 0), size=(160, 120), touch_border=True) -> Image.Image:
    """A subject already cut out: dark body, white collar, red badge, soft edges; the see-through pixels
    carry `clear_rgb` (exporters write black or white there). The body touches the bottom edge when asked."""
    w, h = size[0] * 4, size[1] * 4
    color = Image.new("RGB", (w, h), clear_rgb)
    mask = Image.new("L", (w, h), 0)
    body = [w // 4, h // 5, 3 * w // 4, h + h // 3 if touch_border else 4 * h // 5]
    for layer, fill in ((color, (18, 18, 22)), (mask, 255)):
        ImageDraw.Draw(layer).ellipse(body, fill=fill)
    draw = ImageDraw.Draw(color)
    draw.rectangle([w // 2 - 40, h // 3, w // 2 + 40, h // 3 + 30], fill=(250, 250, 250))  # white collar
    draw.ellipse([w // 2 + 30, h // 2, w // 2 + 80, h // 2 + 50], fill=(200, 30, 30))  # red badge
    rgba = Image.merge("RGBA", (*color.split(), mask)).resize(size, Image.Resampling.BOX)
    pixels = np.asarray(rgba).copy()
    pixels[pixels[..., 3] == 0, :3] = clear_rgb  # what the file really stores under alpha 0
    return Image.fromarray(pixels, "RGBA")


@pytest.mark.parametrize("clear_rgb", [(0, 0, 0), (255, 255, 255), (18, 18, 22)], ids=["black", "white", "subject"])
@pytest.mark.parametrize("touch_border", [True, False], ids=["touching-edge", "floating"])
def test_remove_bg_keeps_the_alpha_of_an_existing_cutout(remove_bg, clear_rgb, touch_border):
    source = cutout(clear_rgb, touch_border=touch_border)
    out = np.asarray(run(remove_bg, source)["image"])
    before = np.asarray(source)
    assert np.array_equal(out[..., 3], before[..., 3]), "alpha changed: holes cut into an existing cut-out"
    seen = before[..., 3] > 0
    assert np.array_equal(out[seen][:, :3], before[seen][:, :3])  # colors of visible pixels untouched


def test_remove_bg_never_makes_a_pixel_more_transparent_than_the_input(remove_bg):
    """An opaque photo on white with part of it already faded out: keyed where white, never above input alpha."""
    size = (160, 120)
    pixels = np.full((size[1], size[0], 4), 255, np.uint8)
    pixels[30:90, 50:110, :3] = (20, 60, 160)  # subject
    pixels[30:90, 50:80, 3] = np.linspace(40, 255, 30, dtype=np.uint8)  # its left half fades in
    pixels[:, :12, 3] = 0  # a transparent strip at the left edge
    out = np.asarray(run(remove_bg, Image.fromarray(pixels, "RGBA"))["image"])
    assert (out[..., 3] <= pixels[..., 3]).all()
    assert out[5, 80, 3] == 0  # the white background is still removed
    assert np.array_equal(out[30:90, 50:110, 3], pixels[30:90, 50:110, 3])  # the subject keeps its own alpha


def test_remove_bg_through_the_api_on_a_transparent_png(client):
    source = cutout((0, 0, 0))
    response = client.post(
        "/api/v1/predict", data={"model": "remove-bg", "file": (io.BytesIO(encode(source)), "cut.png")}
    )
    assert response.status_code == 200, response.get_json()
    url = response.get_json()["results"][0]["image"]
    out = np.asarray(Image.open(io.BytesIO(base64.b64decode(url.split(",", 1)[1]))).convert("RGBA"))
    assert np.array_equal(out[..., 3], np.asarray(source)[..., 3])


# classifiers: inputs unlike the training data


def test_top_k_predictions_flags_unsure_rows_only():
    sure, split, flat = [8.0, 0.0, 0.0, 0.0], [1.0, 0.9, 0.0, 0.0], [0.0, 0.0, 0.0, 0.0]
    results = top_k_predictions(torch.tensor([sure, split, flat]), "abcd", 2, model="letters")
    assert "warnings" not in results[0]
    for result in results[1:]:
        (warning,) = result["warnings"]
        assert warning["code"] == "unfamiliar_input" and "letters" in warning["message"]
        assert warning["details"]["top_score"] < base.MIN_CONFIDENCE
    assert results[2]["warnings"][0]["details"]["entropy"] == pytest.approx(1.0)


def test_entropy_alone_can_flag_a_confident_looking_row():
    """Best label at 62% (over MIN_CONFIDENCE) but the rest spread over nine classes: entropy over MAX_ENTROPY."""
    probabilities = torch.tensor([[0.62] + [0.38 / 9] * 9])
    entropy = float(base.normalized_entropy(probabilities)[0])
    assert entropy > base.MAX_ENTROPY
    (result,) = top_k_predictions(probabilities.log(), [str(i) for i in range(10)], 1)
    assert result["warnings"][0]["details"]["entropy"] == pytest.approx(entropy, abs=1e-5)


def test_digits_warns_for_a_photo_of_a_cat(digits):
    result = run(digits, cat_photo())
    (warning,) = result["warnings"]
    assert warning["code"] == "unfamiliar_input"
    assert "digits" in warning["message"] and "unlike" in warning["message"]
    assert result["predictions"][0]["score"] < base.MIN_CONFIDENCE or warning["details"]["entropy"] > base.MAX_ENTROPY


@pytest.mark.parametrize(
    "image",
    [
        Image.new("L", (64, 64), 128),  # no ink at all
        Image.fromarray(np.random.default_rng(0).integers(0, 256, (64, 64, 3), dtype=np.uint8)),  # noise
    ],
    ids=["blank", "noise"],
)
def test_digits_warns_for_inputs_without_a_digit(digits, image):
    assert run(digits, image)["warnings"][0]["code"] == "unfamiliar_input"


def test_digits_rarely_warns_for_real_digits(digits, digits_split):
    """Every held-out digit in the five renderings users send: at most 1% flagged (0.3% when calibrated)."""
    flagged = total = 0
    for pixels in digits_split.test_images:
        for data, _ in digit_variants(pixels).values():
            result = run(digits, Image.open(io.BytesIO(data)))
            total += 1
            flagged += "warnings" in result
    assert total >= 1000 and flagged / total <= 0.01, f"{flagged} of {total} real digits flagged"


def test_warning_reaches_the_api_and_matches_the_schema(client, digits_split):
    photo = encode(cat_photo(), "JPEG", quality=90)
    seven = digit_variants(digits_split.test_images[list(digits_split.test_labels).index(7)])["gray.png"][0]
    response = client.post(
        "/api/v1/predict",
        data={"model": "digits", "file": [(io.BytesIO(photo), "cat.jpg"), (io.BytesIO(seven), "seven.png")]},
    )
    assert response.status_code == 200
    body = PredictResponse.model_validate(response.get_json())
    cat, digit = body.results
    assert cat.warnings and cat.warnings[0].code == "unfamiliar_input"
    assert digit.warnings is None and "warnings" not in response.get_json()["results"][1]


def test_result_page_without_javascript_shows_the_warning(client):
    photo = encode(cat_photo(), "JPEG", quality=90)
    response = client.post("/predict", data={"model": "digits", "file": (io.BytesIO(photo), "cat.jpg")})
    page = response.get_data(as_text=True)
    assert response.status_code == 200 and 'class="result-warning"' in page and "unlike what digits" in page


def test_history_entry_page_shows_the_warning(app, client):
    photo = encode(cat_photo(), "JPEG", quality=90)
    response = client.post("/api/v1/predict", data={"model": "digits", "file": (io.BytesIO(photo), "cat.jpg")})
    entry = response.get_json()["results"][0]["history_id"]
    assert app.extensions["ai_service"].history.writer.flush(5)
    page = client.get(f"/history/{entry}").get_data(as_text=True)
    assert 'class="result-warning"' in page and "unlike what digits" in page


def test_readme_documents_the_thresholds():
    text = README.read_text(encoding="utf-8")
    assert "unfamiliar_input" in text
    assert f"{base.MIN_CONFIDENCE:g}" in text and f"{base.MAX_ENTROPY:g}" in text
