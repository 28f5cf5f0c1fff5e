"""The predict contract: both body kinds, batches with per-item errors, validation, limits, outputs, geometry."""

from __future__ import annotations

import base64
import io
import re
import socket
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import digit_variants, encode
from PIL import Image

from ai_service import create_app
from ai_service.errors import ERRORS
from ai_service.imaging.resize import fit_image, plan_fit
from ai_service.models.base import Batch, ImageModel, ModelInfo

PREDICT = "/api/v1/predict"
STAGES = {"decode", "preprocess", "queue", "forward", "postprocess", "encode", "total"}
SQUARE = (120, 20, 160, 60)  # where the white square sits in the 200×100 test image


class SquareFinder(ImageModel):
    """A test detector: fits the image (per-request fit/resample), finds the white square in model-input pixels."""

    info = ModelInfo(
        name="squares", version="1", task="detection", input_size=(64, 64), input_mode="L", labels=("square",)
    )

    def load(self, device: torch.device) -> None:
        self.network, self.device = torch.nn.Identity(), device

    def preprocess(self, images, options):
        fit, resample = options.fit or "letterbox", options.resample or "nearest"
        fitted = [fit_image(image.convert("L"), self.info.input_size, fit, resample) for image in images]
        return Batch(
            torch.stack([torch.from_numpy(np.asarray(image, dtype=np.float32)) for image, _ in fitted]),
            [geometry for _, geometry in fitted],
        )

    def postprocess(self, outputs, items, options):
        results = []
        for plane, geometry in zip(outputs, items):
            ys, xs = torch.nonzero(plane > 127, as_tuple=True)
            box = [int(xs.min()), int(ys.min()), int(xs.max()) + 1, int(ys.max()) + 1]
            center = [(box[0] + box[2]) / 2, (box[1] + box[3]) / 2, 0.9]
            mask = Image.fromarray(((plane > 127).numpy() * 255).astype(np.uint8), "L")
            results.append(
                {
                    "detections": [{"label": "square", "score": 1.0, "box": box, "keypoints": [center]}],
                    "mask": mask,
                    "geometry": geometry,
                }
            )
        return results


@pytest.fixture
def app(home: Path):
    app = create_app({"TESTING": True, "home": str(home), "log_level": "WARNING", "max_files": 5})
    app.extensions["ai_service"].registry.register(SquareFinder())
    return app


@pytest.fixture
def seven(digits_split) -> bytes:
    index = int(list(digits_split.test_labels).index(7))
    return digit_variants(digits_split.test_images[index])["gray.png"][0]


def square_image(size=(200, 100), box=SQUARE) -> Image.Image:
    image = Image.new("L", size, 0)
    image.paste(255, box)
    return image


def post_files(client, files, **form):
    parts = [(io.BytesIO(data), name) for name, data in files]
    return client.post(PREDICT, data={"file": parts, **form}, content_type="multipart/form-data")


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def error_of(response, status: int, code: str) -> dict:
    assert response.status_code == status, response.get_data(as_text=True)[:500]
    body = response.get_json()
    assert body["error"]["code"] == code and body["error"]["message"], body
    assert code in ERRORS and ERRORS[code].status == status or code == "http_error"
    return body["error"]


def decode_data_url(url: str, mime: str) -> Image.Image:
    assert url.startswith(f"data:{mime};base64,"), url[:40]
    return Image.open(io.BytesIO(base64.b64decode(url.split(",", 1)[1])))


# --- requests: multipart and JSON give the same answer ---------------------------------------------------------


def test_single_multipart_file_has_one_result_and_all_timing_stages(client, seven):
    response = post_files(client, [("seven.png", seven)], top_k="2", model="digits")
    assert response.status_code == 200
    body = response.get_json()
    assert set(body) >= {"model", "version", "task", "results", "timing_ms"}
    [result] = body["results"]
    assert result["index"] == 0 and result["filename"] == "seven.png" and len(result["predictions"]) == 2
    assert result["predictions"][0]["label"] == "7"
    assert STAGES <= set(body["timing_ms"])
    stages = sum(value for key, value in body["timing_ms"].items() if key != "total")
    assert body["timing_ms"]["total"] >= stages - 0.01  # wall clock: the stages plus what lies between them
    assert body["batch_size"] >= 1
    assert "forward;dur=" in response.headers["Server-Timing"]


@pytest.mark.parametrize("encoding", ["base64", "data-url", "urlsafe-unpadded", "wrapped"])
def test_json_image_encodings(client, seven, encoding):
    text = {
        "base64": b64(seven),
        "data-url": "data:image/png;base64," + b64(seven),
        "urlsafe-unpadded": base64.urlsafe_b64encode(seven).decode().rstrip("="),
        "wrapped": "\n".join(re.findall(".{1,76}", b64(seven))),
    }[encoding]
    response = client.post(PREDICT, json={"image": text, "model": "digits", "top_k": 1})
    assert response.status_code == 200, response.get_json()
    [result] = response.get_json()["results"]
    assert result["filename"] == "" and result["predictions"][0]["label"] == "7"


def test_multipart_batch_keeps_order_and_isolates_the_bad_item(client, seven):
    response = post_files(client, [("a.png", seven), ("b.png", b"not an image"), ("c.png", b""), ("d.png", seven)])
    assert response.status_code == 200
    results = response.get_json()["results"]
    assert [r["index"] for r in results] == [0, 1, 2, 3]
    assert [r["filename"] for r in results] == ["a.png", "b.png", "c.png", "d.png"]
    assert results[0]["predictions"][0]["label"] == results[3]["predictions"][0]["label"] == "7"
    assert (results[1]["status"], results[1]["error"]["code"]) == (415, "unsupported_format")
    assert (results[2]["status"], results[2]["error"]["code"]) == (400, "empty_file")


def test_json_batch_with_bad_items(client, seven):
    images = [
        b64(seven),
        "https://example.com/seven.png",
        "%%% not base64 %%%",
        b64(seven[:80]),
        "data:image/png," + "x" * 10,
    ]
    response = client.post(PREDICT, json={"images": images, "top_k": 1})
    assert response.status_code == 200
    first, url, garbage, broken, plain_data_url = response.get_json()["results"]
    assert first["predictions"][0]["label"] == "7"
    assert url["error"]["code"] == "remote_url_not_fetched" and url["error"]["details"]["loc"] == ["images", 1]
    assert garbage["error"]["code"] == "invalid_base64" and garbage["status"] == 422
    assert broken["error"]["code"] in ("corrupt_image", "invalid_image")
    assert plain_data_url["error"]["code"] == "invalid_base64"


def test_a_json_list_of_one_is_still_a_batch(client):
    response = client.post(PREDICT, json={"images": ["AAAA"]})
    assert response.status_code == 200 and response.get_json()["results"][0]["error"]["code"] == "unsupported_format"


@pytest.mark.parametrize(
    "url",
    [
        "http://169.254.169.254/latest/meta-data",
        "https://example.com/a.png",
        "//example.com/a.png",
        "file:///etc/passwd",
        "ftp://example.com/a.png",
        "HTTPS://EXAMPLE.COM/A.PNG",
        "  http://127.0.0.1:8000/x",
    ],
)
def test_remote_urls_are_refused_without_any_connection(client, monkeypatch, url):
    attempts = []
    monkeypatch.setattr(socket.socket, "connect", lambda self, address: attempts.append(address))
    monkeypatch.setattr(socket, "create_connection", lambda *args, **kwargs: attempts.append(args))
    error = error_of(client.post(PREDICT, json={"image": url}), 422, "remote_url_not_fetched")
    assert "not fetched" in error["message"] and "server-side request forgery" in error["message"]
    assert error["details"]["loc"] == ["image"] and attempts == []


# --- validation --------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "body, loc",
    [
        ({"image": "AAAA", "top_k": 0}, ["top_k"]),
        ({"image": "AAAA", "top_k": "many"}, ["top_k"]),
        ({"image": "AAAA", "fit": "squash"}, ["fit"]),
        ({"image": "AAAA", "resample": "hamming"}, ["resample"]),
        ({"image": "AAAA", "output_format": "gif"}, ["output_format"]),
        ({"image": "AAAA", "return": "xml"}, ["return"]),
        ({"image": "AAAA", "background": "not-a-color"}, ["background"]),
        ({"image": "AAAA", "quality": 101}, ["quality"]),
        ({"image": "AAAA", "model": "../etc/passwd"}, ["model"]),
        ({"image": "AAAA", "topk": 3}, ["topk"]),
        ({"image": 42}, ["image"]),
        ({"images": []}, ["images"]),
        ({"images": ["AAAA", 7]}, ["images", 1]),
        ({"image": "AAAA", "images": ["AAAA"]}, []),
        ({}, []),
        ([1, 2], []),
    ],
)
def test_json_validation_errors_name_the_field(client, body, loc):
    error = error_of(client.post(PREDICT, json=body), 422, "validation_error")
    assert loc in [issue["loc"] for issue in error["details"]], error
    assert all(set(issue) == {"loc", "msg", "type"} for issue in error["details"])
    where = ".".join(map(str, loc)) or "body"
    assert f"{where}:" in error["message"]


def test_multipart_options_are_validated_too(client, seven):
    error = error_of(post_files(client, [("a.png", seven)], fit="squash", color="red"), 422, "validation_error")
    assert sorted(issue["loc"] for issue in error["details"]) == [["color"], ["fit"]]


def test_malformed_json_and_other_content_types(client):
    error_of(client.post(PREDICT, data="{not json", content_type="application/json"), 400, "invalid_json")
    error = error_of(client.post(PREDICT, data=b"\x89PNG", content_type="image/png"), 415, "unsupported_media_type")
    assert "multipart/form-data" in error["message"] and "application/json" in error["message"]


def test_model_addressing(client, seven):
    ok = client.post(PREDICT, json={"image": b64(seven), "model": "digits@1.0"})
    assert ok.status_code == 200 and ok.get_json()["version"] == "1.0"
    error = error_of(client.post(PREDICT, json={"image": b64(seven), "model": "digits@99"}), 404, "unknown_model")
    assert "digits" in error["message"]


# --- limits ------------------------------------------------------------------------------------------------


def test_too_many_files_names_the_limit(client, seven):
    error = error_of(post_files(client, [("a.png", seven)] * 6), 413, "too_many_files")
    assert "At most 5" in error["message"] and error["details"]["limit"] == 5
    error = error_of(client.post(PREDICT, json={"images": [b64(seven)] * 6}), 413, "too_many_files")
    assert "At most 5" in error["message"]


def test_decoded_json_bytes_count_against_the_upload_limit(home):
    client = create_app({"home": str(home), "max_upload_mb": 0.01, "log_level": "WARNING"}).test_client()
    blob = b64(b"\x89PNG" + bytes(6000))
    error = error_of(client.post(PREDICT, json={"images": [blob, blob]}), 413, "payload_too_large")
    assert "0.01 MB" in error["message"]
    assert client.post(PREDICT, json={"images": [blob]}).status_code == 200  # 6 KB decoded is within 10 KB


def test_pixel_limit_names_the_limit(home):
    client = create_app({"home": str(home), "max_pixels": 10_000, "log_level": "WARNING"}).test_client()
    error = error_of(post_files(client, [("big.png", encode(Image.new("L", (200, 200))))]), 413, "image_too_large")
    assert "10,000" in error["message"]


# --- image outputs -----------------------------------------------------------------------------------------


@pytest.mark.parametrize("fmt, mime", [("png", "image/png"), ("webp", "image/webp"), ("jpeg", "image/jpeg")])
def test_image_outputs_as_data_urls(client, fmt, mime):
    source = encode(Image.radial_gradient("L").convert("RGB").resize((48, 32)))
    response = post_files(client, [("g.png", source)], model="edges", output_format=fmt)
    assert response.status_code == 200, response.get_json()
    [result] = response.get_json()["results"]
    assert decode_data_url(result["image"], mime).size == (48, 32)


@pytest.mark.parametrize("fmt, mime", [("png", "image/png"), ("webp", "image/webp"), ("jpeg", "image/jpeg")])
def test_return_image_answers_with_the_bytes(client, fmt, mime):
    source = encode(Image.radial_gradient("L").convert("RGB").resize((48, 32)))
    response = post_files(client, [("my photo.png", source)], model="edges", output_format=fmt, **{"return": "image"})
    assert response.status_code == 200 and response.mimetype == mime
    assert Image.open(io.BytesIO(response.data)).size == (48, 32)
    assert response.headers["X-Model"] == "edges@1.0" and "X-Request-ID" in response.headers
    assert 'filename="my_photo-edges.' in response.headers["Content-Disposition"]
    assert "decode;dur=" in response.headers["Server-Timing"]


def test_return_image_is_refused_where_it_cannot_work(client, seven):
    source = encode(Image.new("RGB", (16, 16)))
    batch = post_files(client, [("a.png", source), ("b.png", source)], model="edges", **{"return": "image"})
    assert error_of(batch, 422, "validation_error")["details"][0]["loc"] == ["return"]
    classifier = post_files(client, [("a.png", seven)], model="digits", **{"return": "image"})
    assert "returns no image" in error_of(classifier, 422, "validation_error")["message"]


def test_background_flattens_transparent_outputs(client):
    clear = Image.new("RGBA", (24, 24), (0, 0, 0, 0))
    clear.paste((200, 30, 30, 255), (6, 6, 18, 18))
    response = post_files(client, [("a.png", encode(clear))], model="remove-bg", background="#00ff00")
    assert response.status_code == 200, response.get_json()
    image = decode_data_url(response.get_json()["results"][0]["image"], "image/png")
    assert image.mode == "RGB"
    kept = post_files(client, [("a.png", encode(clear))], model="remove-bg")
    assert decode_data_url(kept.get_json()["results"][0]["image"], "image/png").mode in ("RGBA", "LA")


# --- geometry: outputs in the coordinates of the image as the user sees it ---------------------------------


@pytest.mark.parametrize("fit", ["letterbox", "stretch", "crop"])
def test_boxes_keypoints_and_masks_come_back_in_original_pixels(client, fit):
    response = post_files(client, [("sq.png", encode(square_image()))], model="squares", fit=fit)
    assert response.status_code == 200, response.get_json()
    [result] = response.get_json()["results"]
    geometry = result["geometry"]
    assert geometry["original_size"] == [200, 100] and geometry["input_size"] == [64, 64]
    assert geometry["fit"] == fit and geometry["exif_orientation"] == 1 and geometry["exif_rotated"] is False
    visible = (SQUARE[0], SQUARE[1], min(SQUARE[2], geometry["crop"][2]), SQUARE[3])
    [detection] = result["detections"]
    assert detection["box"] == pytest.approx(visible, abs=4)
    x, y, score = detection["keypoints"][0]
    assert (x, y, score) == pytest.approx(((visible[0] + visible[2]) / 2, (visible[1] + visible[3]) / 2, 0.9), abs=4)
    mask = np.asarray(decode_data_url(result["mask"], "image/png").convert("L")) > 127
    assert mask.shape == (100, 200)
    ys, xs = np.nonzero(mask)
    assert [xs.min(), ys.min(), xs.max() + 1, ys.max() + 1] == pytest.approx(visible, abs=4)


def test_letterbox_geometry_reports_scale_and_padding(client):
    result = post_files(
        client, [("sq.png", encode(square_image()))], model="squares", fit="letterbox", resample="bicubic"
    ).get_json()["results"][0]
    geometry = result["geometry"]
    assert geometry["scale"] == pytest.approx([0.32, 0.32]) and geometry["padding"] == [0, 16, 0, 16]
    assert geometry["crop"] == [0, 0, 200, 100] and geometry["resample"] == "bicubic"


def test_exif_rotation_is_applied_and_reported(client):
    upright = square_image((100, 200), (20, 120, 60, 160))
    stored = upright.transpose(Image.Transpose.ROTATE_90)  # what a phone writes with orientation 6
    exif = Image.Exif()
    exif[0x0112] = 6
    buffer = io.BytesIO()
    stored.save(buffer, "JPEG", quality=100, exif=exif.tobytes())
    response = post_files(client, [("phone.jpg", buffer.getvalue())], model="squares", fit="letterbox")
    [result] = response.get_json()["results"]
    assert (result["width"], result["height"]) == (100, 200)
    geometry = result["geometry"]
    assert geometry["exif_orientation"] == 6 and geometry["exif_rotated"] is True
    assert geometry["original_size"] == [100, 200]
    assert result["detections"][0]["box"] == pytest.approx((20, 120, 60, 160), abs=4)


def test_models_without_their_own_fit_still_report_size_and_exif(client, seven):
    [result] = post_files(client, [("seven.png", seven)]).get_json()["results"]
    assert result["geometry"]["original_size"] == [result["width"], result["height"]]
    assert result["geometry"]["exif_rotated"] is False


@pytest.mark.parametrize("fit", ["stretch", "letterbox", "crop"])
@pytest.mark.parametrize("size", [(200, 100), (37, 91), (64, 64)])
def test_geometry_mapping_inverts_the_fit(fit, size):
    geometry = plan_fit(size, (64, 48), fit, "bilinear")
    sx, sy = geometry.scale
    left, top = geometry.padding[:2]
    x0, y0 = geometry.crop[:2]
    for x, y in [(x0 + 1.0, y0 + 2.0), (size[0] / 2, size[1] / 2)]:
        model_point = (left + (x - x0) * sx, top + (y - y0) * sy)
        assert geometry.to_original(*model_point) == pytest.approx((x, y))
    assert geometry.box_to_original([-5000, -5000, 5000, 5000]) == [0, 0, *size]  # clipped to the image
    assert geometry.keypoint_to_original([left, top, 0.5, 2]) == pytest.approx([x0, y0, 0.5, 2], abs=0.01)
    assert geometry.mask_to_original(Image.new("L", (64, 48), 255)).size == size


def test_reduced_jpeg_decoding_does_not_change_the_coordinates(client):
    big = square_image((1600, 800), tuple(8 * v for v in SQUARE)).convert("RGB")
    response = post_files(client, [("big.jpg", encode(big, "JPEG", quality=95))], model="squares", fit="stretch")
    [result] = response.get_json()["results"]
    assert (result["width"], result["height"]) == (1600, 800)
    geometry = result["geometry"]
    assert geometry["original_size"] == [1600, 800] and geometry["decoded_size"][0] < 1600  # decoded via JPEG draft
    assert result["detections"][0]["box"] == pytest.approx([8 * v for v in SQUARE], abs=30)
    mask = decode_data_url(result["mask"], "image/png")
    assert mask.size == (1600, 800)
