"""One geometry type: fit an image, map boxes and masks back, rebase onto the full-size source, serialize."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from ai_service.imaging.geometry import source_json
from ai_service.imaging.resize import fit_image, plan_fit


def square(size=(200, 100), box=(120, 20, 160, 60)) -> Image.Image:
    image = Image.new("L", size, 0)
    image.paste(255, box)
    return image


@pytest.mark.parametrize("fit", ["letterbox", "crop", "stretch"])
def test_box_and_mask_found_in_the_fitted_image_map_back_onto_the_original(fit):
    fitted, geometry = fit_image(square(), (64, 64), fit, "nearest")
    plane = np.asarray(fitted) > 127
    ys, xs = np.nonzero(plane)
    box = geometry.box_to_original([xs.min(), ys.min(), xs.max() + 1, ys.max() + 1])
    visible = (120, 20, min(160, round(geometry.crop[2])), 60)
    assert box == pytest.approx(visible, abs=2)
    mask = geometry.mask_to_original(Image.fromarray((plane * 255).astype(np.uint8), "L"))
    assert mask.size == (200, 100)
    ys, xs = np.nonzero(np.asarray(mask))
    assert [xs.min(), ys.min(), xs.max() + 1, ys.max() + 1] == pytest.approx(visible, abs=2)


def test_letterbox_as_json_gives_the_documented_fields_only():
    geometry = plan_fit((200, 100), (64, 64), "letterbox", "bicubic")
    assert geometry.as_json() == {
        "original_size": [200, 100],
        "input_size": [64, 64],
        "fit": "letterbox",
        "resample": "bicubic",
        "scale": [0.32, 0.32],
        "padding": [0, 16, 0, 16],
        "crop": [0, 0, 200, 100],
    }


def test_rebase_onto_a_larger_source_keeps_the_mapping_and_reports_the_decoded_size():
    decoded = plan_fit((300, 200), (150, 150), "crop", "bilinear")  # a 2400x1600 JPEG decoded at 1/8
    full = decoded.rebase((2400, 1600))
    assert full.original_size == (2400, 1600) and full.decoded_size == (300, 200) and full.input_size == (150, 150)
    assert full.box_to_original([0, 0, 150, 150]) == pytest.approx([400.0, 0.0, 2000.0, 1600.0])
    for point in [(0, 0), (37, 81), (150, 150)]:
        x, y = decoded.to_original(*point)
        assert full.to_original(*point) == pytest.approx((x * 8, y * 8))
    assert full.mask_to_original(Image.new("L", (150, 150), 255)).size == (2400, 1600)
    data = full.as_json()
    assert data["original_size"] == [2400, 1600] and data["decoded_size"] == [300, 200]
    assert data["crop"] == [400.0, 0.0, 2000.0, 1600.0] and data["scale"] == pytest.approx([0.09375, 0.09375])
    assert full.rebase((2400, 1600)) is full and decoded.rebase((300, 200)) is decoded


def test_convert_json_keeps_the_convert_endpoints_field_names():
    geometry = plan_fit((400, 200), (224, 224), "letterbox").rebase((800, 400))
    assert geometry.as_convert_json() == {
        "mode": "letterbox",
        "src_size": [800, 400],
        "dst_size": [224, 224],
        "scale_x": 0.28,
        "scale_y": 0.28,
        "crop_box": [0.0, 0.0, 800.0, 400.0],
        "content_box": [0, 56, 224, 168],
        "padding": [0, 56, 0, 56],
    }


def test_results_without_a_fit_report_the_source_and_decoded_sizes():
    assert source_json((24, 24), (24, 24)) == {"original_size": [24, 24]}
    assert source_json((300, 200), (2400, 1600)) == {"original_size": [2400, 1600], "decoded_size": [300, 200]}
