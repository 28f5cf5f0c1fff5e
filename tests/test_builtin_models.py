"""Built-in image-to-image networks: edges, upscale-2x/4x, remove-bg — behavior checked on synthetic images."""

import base64
import io

import numpy as np
import pytest
import torch
from PIL import Image, ImageDraw, ImageFilter

from ai_service.imaging.errors import ImageTooLargeError
from ai_service.models.base import ModelOptions
from ai_service.models.builtin import builtin_models
from tests.conftest import encode


@pytest.fixture(scope="module")
def models():
    loaded = {model.info.name: model for model in builtin_models()}
    for model in loaded.values():
        model.load(torch.device("cpu"))
    return loaded


def run(model, *images):
    options = ModelOptions()
    batch = model.preprocess(list(images), options)
    return [r["image"] for r in model.postprocess(model.forward(batch.tensor), batch.states(), options)]


def square(mode="RGB", size=64, inner=(220, 220, 220), outer=(30, 30, 30)):
    image = Image.new("RGB", (size, size), outer)
    ImageDraw.Draw(image).rectangle([size // 4, size // 4, 3 * size // 4 - 1, 3 * size // 4 - 1], fill=inner)
    return image.convert(mode)


def test_builtins_need_no_weights_and_describe_themselves(models):
    assert {"digits", "edges", "upscale-2x", "upscale-4x", "remove-bg"} <= set(models)
    for name in ("edges", "upscale-2x", "upscale-4x", "remove-bg"):
        info = models[name].info
        assert info.task == "image-to-image" and info.input_size is None and info.description
        assert models[name].decode_size() is None


def test_edges_are_thin_lines_on_the_boundary_only(models):
    (edges,) = run(models["edges"], square())
    values = np.asarray(edges)
    assert edges.mode == "L" and edges.size == (64, 64)
    strong = values > 128
    assert 110 <= strong.sum() <= 140  # one pixel around a 32×32 square (perimeter 124)
    assert values[24:40, 24:40].max() == 0 and values[:10, :10].max() == 0
    assert strong[:, 32].sum() == 2 and strong[32, :].sum() == 2


def test_edges_see_color_only_boundaries_and_keep_alpha(models):
    red_green = Image.new("RGB", (40, 20), (200, 60, 0))
    red_green.paste((0, 120, 0), (20, 0, 40, 20))  # nearly equal luma, very different color
    (edges,) = run(models["edges"], red_green)
    assert np.asarray(edges)[:, 18:22].max() > 200
    cutout = Image.new("RGBA", (40, 40), (255, 0, 0, 0))
    ImageDraw.Draw(cutout).ellipse([8, 8, 31, 31], fill=(90, 90, 90, 255))
    cutout.putpixel((1, 1), (0, 255, 0, 0))  # a hidden color under full transparency draws nothing
    (edges,) = run(models["edges"], cutout)
    assert edges.mode == "LA"
    assert np.array_equal(np.asarray(edges)[..., 1], np.asarray(cutout)[..., 3])
    assert np.asarray(edges)[:4, :4, 0].max() == 0


@pytest.mark.parametrize("name, scale", [("upscale-2x", 2), ("upscale-4x", 4)])
@pytest.mark.parametrize("mode", ["L", "LA", "RGB", "RGBA"])
def test_upscale_sizes_and_modes(models, name, scale, mode):
    image = square(mode, size=24)
    (big,) = run(models[name], image)
    assert big.size == (24 * scale, 24 * scale) and big.mode == mode


def test_upscale_is_faithful_and_never_rings(models):
    rng = np.random.default_rng(0)
    smooth = Image.fromarray(rng.integers(0, 256, (24, 32, 3), dtype=np.uint8)).filter(ImageFilter.GaussianBlur(2))
    (big,) = run(models["upscale-2x"], smooth)
    back = np.asarray(big.resize(smooth.size, Image.Resampling.BOX), dtype=float)
    assert np.abs(back - np.asarray(smooth, dtype=float)).mean() < 1.5
    step = Image.fromarray(np.repeat(np.array([[50] * 12 + [200] * 12], np.uint8), 6, axis=0), "L")
    (ours,) = run(models["upscale-4x"], step)
    pillow = step.resize((96, 24), Image.Resampling.LANCZOS)
    assert np.asarray(pillow).max() > 200 or np.asarray(pillow).min() < 50  # Pillow's Lanczos overshoots...
    assert np.asarray(ours).min() == 50 and np.asarray(ours).max() == 200  # ...ours stays within the input
    assert np.asarray(ours)[0, 40] == 50 and np.asarray(ours)[0, 56] == 200  # and the edge stays sharp


def test_upscale_keeps_transparent_edges_free_of_dark_fringes(models):
    sprite = Image.new("RGBA", (20, 20), (0, 0, 0, 0))
    ImageDraw.Draw(sprite).ellipse([4, 4, 15, 15], fill=(255, 40, 0, 255))
    (big,) = run(models["upscale-4x"], sprite)
    pixels = np.asarray(big)
    visible = pixels[pixels[..., 3] > 0]
    assert ((0 < pixels[..., 3]) & (pixels[..., 3] < 255)).any()  # a soft edge exists...
    assert np.abs(visible[:, :3].astype(int) - [255, 40, 0]).max() <= 1  # ...in the sprite's own color


def test_upscale_refuses_outputs_over_the_pixel_limit(models):
    huge = Image.new("RGB", (1500, 1100))
    with pytest.raises(ImageTooLargeError, match="megapixels"):
        models["upscale-4x"].preprocess([huge], ModelOptions())


def studio_shot(size=(160, 120), key=(0, 177, 64)):
    """A red disc with a key-colored hole, on a key-colored background, soft-edged and JPEG-noisy."""
    big = Image.new("RGB", (size[0] * 4, size[1] * 4), key)
    draw = ImageDraw.Draw(big)
    draw.ellipse([160, 80, 480, 400], fill=(210, 40, 40))
    draw.rectangle([290, 210, 350, 270], fill=key)
    small = big.resize(size, Image.Resampling.LANCZOS)
    return Image.open(io.BytesIO(encode(small, "JPEG", quality=92)))


def test_remove_background_cuts_out_the_subject_with_soft_unfringed_edges(models):
    (cut,) = run(models["remove-bg"], studio_shot())
    pixels = np.asarray(cut)
    alpha = pixels[..., 3]
    assert cut.mode == "RGBA"
    assert alpha[:10, :].max() == 0 and alpha[:, :20].max() == 0  # background gone
    assert alpha[40:50, 55:65].min() == 255 and alpha[58:62, 78:82].min() == 255  # subject and enclosed hole kept
    edge = (alpha > 20) & (alpha < 235)
    assert edge.sum() > 50  # anti-aliased rim is soft
    rim = pixels[edge][:, :3].astype(int)
    assert np.median(rim[:, 1]) < 90  # un-mixed: red, not the green of the old background


def test_remove_background_keeps_existing_transparency(models):
    shot = studio_shot().convert("RGBA")
    shot.putpixel((80, 60), (210, 40, 40, 100))
    (cut,) = run(models["remove-bg"], shot)
    assert cut.getpixel((80, 60))[3] == 100


def test_native_models_batch_images_of_different_sizes(models):
    outputs = run(models["upscale-2x"], square(size=16), square("RGBA", size=30), Image.new("L", (7, 3), 99))
    assert [image.size for image in outputs] == [(32, 32), (60, 60), (14, 6)]
    assert set(np.asarray(outputs[2]).ravel()) == {99}


def test_upscale_through_the_api(client):
    response = client.post(
        "/api/v1/predict", data={"model": "upscale-2x", "file": (io.BytesIO(encode(square("RGBA", size=10))), "s.png")}
    )
    body = response.get_json()
    assert response.status_code == 200 and body["task"] == "image-to-image"
    image = Image.open(io.BytesIO(base64.b64decode(body["results"][0]["image"].split(",", 1)[1])))
    assert image.size == (20, 20) and image.mode == "RGBA"
