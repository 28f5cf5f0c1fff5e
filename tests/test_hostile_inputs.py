"""Hostile and odd input against a live gunicorn: every reject is 4xx JSON with a message, every valid edge
case is 2xx with the right answer, nothing is ever 5xx, and /healthz answers after each request."""

from __future__ import annotations

import base64
import json
import socket
import time
from collections.abc import Callable
from typing import Any

import imaging_samples as samples
import numpy as np
import pytest
import requests
from conftest import encode
from live_gunicorn import running_gunicorn
from PIL import Image

from ai_service.errors import ERRORS
from ai_service.imaging import errors as decode_errors

pytestmark = pytest.mark.e2e
MAX_UPLOAD_MB = 2
MAX_FILES = 4
BODY_TIMEOUT = 2.0
PREDICT = "/api/v1/predict"


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    with running_gunicorn(
        tmp_path_factory.mktemp("hostile"),
        workers=2,
        threads=4,
        preload="digits",
        max_upload_mb=MAX_UPLOAD_MB,
        max_files=MAX_FILES,
        body_timeout=BODY_TIMEOUT,
    ) as live:
        yield live


@pytest.fixture(scope="module")
def seven(digits_split) -> Image.Image:
    """A clean rendering of a held-out 7 (gray ink on black, 64x64)."""
    from ai_service.models.builtin.digits_training import render_digit

    index = int(list(digits_split.test_labels).index(7))
    return render_digit(digits_split.test_images[index], 64)


def assert_alive(server) -> None:
    response = requests.get(server.base + "/healthz", timeout=5)
    assert response.status_code == 200 and response.json()["status"] == "ok"


def assert_reject(response: requests.Response, status: int, code: str | None = None) -> dict[str, Any]:
    """A 4xx JSON error envelope with a human message (and the expected code, when given)."""
    assert response.status_code == status, (response.status_code, response.text[:300])
    assert response.headers["Content-Type"].startswith("application/json"), response.headers["Content-Type"]
    error = response.json()["error"]
    assert isinstance(error["message"], str) and len(error["message"]) > 10
    if code is not None:
        assert error["code"] == code, error
    return error


def first_result(body: dict[str, Any]) -> dict[str, Any]:
    """The first item's result, whether the answer is a `results` list or a single flat result."""
    return body["results"][0] if "results" in body else body


def top_label(body: dict[str, Any]) -> str:
    return first_result(body)["predictions"][0]["label"]


# ---------------------------------------------------------------- decoding: the image-utilities bad-input corpus

ERROR_CLASSES = {name: getattr(decode_errors, name) for name in dir(decode_errors) if name.endswith("Error")}
BAD_INPUTS = samples.bad_inputs()


# Vector images are rasterised at the model's input size, so a huge declared canvas costs nothing there.
SCALED_ON_DECODE = {"svg_huge_canvas"}


@pytest.mark.parametrize("name", sorted(BAD_INPUTS.keys() - SCALED_ON_DECODE))
def test_bad_image_bytes_are_rejected_with_their_code(server, name):
    data, class_name = BAD_INPUTS[name]
    expected = ERROR_CLASSES[class_name]
    filename = "upload.svg" if name.startswith("svg") else "upload.png"
    response = requests.post(
        server.base + PREDICT, files={"file": (filename, data, "application/octet-stream")}, timeout=30
    )
    assert_reject(response, ERRORS[expected.code].status, expected.code)
    assert_alive(server)


@pytest.mark.parametrize("name", sorted(SCALED_ON_DECODE))
def test_huge_vector_canvas_is_rendered_small(server, name):
    response = requests.post(server.base + PREDICT, files={"file": ("big.svg", BAD_INPUTS[name][0])}, timeout=30)
    assert response.status_code == 200, response.text[:300]
    assert len(first_result(response.json())["predictions"]) == 3
    assert_alive(server)


# ---------------------------------------------------------------- protocol-level abuse


def multipart(fields: list[tuple[str, tuple[str, bytes, str] | str]]) -> tuple[bytes, str]:
    """Encode parts by hand so names and filenames can be anything (NUL bytes, traversal)."""
    boundary = "hostileboundary7d1f"
    chunks = []
    for name, value in fields:
        if isinstance(value, tuple):
            filename, data, mime = value
            head = (
                f'--{boundary}\r\nContent-Disposition: form-data; name="{name}"; filename="{filename}"\r\n'
                f"Content-Type: {mime}\r\n\r\n"
            ).encode("utf-8", "surrogateescape")
            chunks.append(head + data + b"\r\n")
        else:
            chunks.append(f'--{boundary}\r\nContent-Disposition: form-data; name="{name}"\r\n\r\n{value}\r\n'.encode())
    chunks.append(f"--{boundary}--\r\n".encode())
    return b"".join(chunks), f"multipart/form-data; boundary={boundary}"


def post_raw(server, body: bytes, content_type: str, path: str = PREDICT) -> requests.Response:
    return requests.post(server.base + path, data=body, headers={"Content-Type": content_type}, timeout=30)


def post_json(server, payload: Any) -> requests.Response:
    return post_raw(server, json.dumps(payload).encode(), "application/json")


def png_bomb_b64() -> str:
    return base64.b64encode(samples.png_header_only_bomb()).decode()


Case = tuple[Callable[..., requests.Response], int, "str | None"]
REJECTS: dict[str, Callable[[Any, Image.Image], tuple[requests.Response, int, str | None]]] = {
    "wrong_field_name": lambda s, img: (
        requests.post(s.base + PREDICT, files={"image": ("a.png", encode(img))}, timeout=30),
        400,
        "missing_file",
    ),
    "no_body": lambda s, img: (requests.post(s.base + PREDICT, timeout=30), 400, "missing_file"),
    "too_many_files": lambda s, img: (
        requests.post(
            s.base + PREDICT, files=[("file", (f"{i}.png", encode(img))) for i in range(MAX_FILES + 1)], timeout=30
        ),
        413,
        "too_many_files",
    ),
    "body_over_limit": lambda s, img: (
        requests.post(
            s.base + PREDICT, files={"file": ("big.png", b"\x89PNG" + b"\0" * (MAX_UPLOAD_MB * 2**20 + 10))}, timeout=30
        ),
        413,
        "payload_too_large",
    ),
    "too_many_form_parts": lambda s, img: (post_raw(s, *multipart([(f"f{i}", "x") for i in range(200)])), 413, None),
    "text_plain_body": lambda s, img: (post_raw(s, b"hello", "text/plain"), 415, None),
    "broken_multipart": lambda s, img: (
        post_raw(s, b"--nope\r\ngarbage", "multipart/form-data; boundary=x"),
        400,
        None,
    ),
    "invalid_json_syntax": lambda s, img: (post_raw(s, b'{"image": ', "application/json"), 400, "invalid_json"),
    "json_invalid_base64": lambda s, img: (post_json(s, {"image": "!!!not base64!!!"}), 422, "invalid_base64"),
    "json_base64_of_bomb": lambda s, img: (post_json(s, {"image": png_bomb_b64()}), 413, "image_too_large"),
    "json_image_not_string": lambda s, img: (post_json(s, {"image": 12345}), 422, "validation_error"),
    "json_images_not_list": lambda s, img: (post_json(s, {"images": {"a": 1}}), 422, "validation_error"),
    "json_top_k_not_int": lambda s, img: (
        post_json(s, {"image": base64.b64encode(encode(img)).decode(), "top_k": "many"}),
        422,
        "validation_error",
    ),
    "json_both_image_and_images": lambda s, img: (
        post_json(s, {"image": "AAAA", "images": ["AAAA"]}),
        422,
        "validation_error",
    ),
    "json_remote_url": lambda s, img: (
        post_json(s, {"image": "http://169.254.169.254/latest/meta-data"}),
        422,
        "remote_url_not_fetched",
    ),
    "json_array_body": lambda s, img: (post_json(s, [1, 2, 3]), 422, "validation_error"),
    "huge_json": lambda s, img: (
        post_raw(s, b'{"image": "' + b"A" * (4 * MAX_UPLOAD_MB * 2**20) + b'"}', "application/json"),
        413,
        "payload_too_large",
    ),
    "unknown_model": lambda s, img: (
        requests.post(s.base + PREDICT, files={"file": ("a.png", encode(img))}, data={"model": "nope"}, timeout=30),
        404,
        "unknown_model",
    ),
    "traversal_model_name": lambda s, img: (
        requests.post(
            s.base + PREDICT, files={"file": ("a.png", encode(img))}, data={"model": "../../etc/passwd"}, timeout=30
        ),
        422,
        "validation_error",
    ),
    "top_k_zero": lambda s, img: (
        requests.post(s.base + PREDICT, files={"file": ("a.png", encode(img))}, data={"top_k": "0"}, timeout=30),
        422,
        "validation_error",
    ),
    "get_on_predict": lambda s, img: (requests.get(s.base + PREDICT, timeout=30), 405, "method_not_allowed"),
    "unknown_api_path": lambda s, img: (
        requests.get(s.base + "/api/v1/no-such-endpoint", timeout=30),
        404,
        "not_found",
    ),
}


@pytest.mark.parametrize("name", sorted(REJECTS))
def test_protocol_abuse_is_rejected_cleanly(server, seven, name):
    response, status, code = REJECTS[name](server, seven)
    assert_reject(response, status, code)
    assert_alive(server)


# ---------------------------------------------------------------- valid but odd: must succeed with the right answer


def sixteen_bit_png(img: Image.Image) -> bytes:
    return encode(Image.fromarray(np.asarray(img, dtype=np.uint16) * 257))


def cmyk_jpeg(img: Image.Image) -> bytes:
    return encode(img.convert("CMYK"), "JPEG", quality=95)


def palette_png_with_transparency(img: Image.Image) -> bytes:
    """Two-color palette PNG: black ink, transparent white background (a typical icon-style export)."""
    paletted = img.point(lambda v: 0 if v > 90 else 255).convert("P")
    white = paletted.getpalette()[::3].index(255)
    return encode(paletted, transparency=white)


def exif_rotated_jpeg(img: Image.Image) -> bytes:
    """Pixels stored rotated, with the EXIF orientation that turns them upright again."""
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90° clockwise to display
    return encode(img.convert("RGB").transpose(Image.Transpose.ROTATE_90), "JPEG", quality=95, exif=exif.tobytes())


def animated_gif(img: Image.Image) -> bytes:
    return encode(img, "GIF", save_all=True, append_images=[Image.new("L", img.size, 0)], duration=50, loop=0)


VALID: dict[str, Callable[[Image.Image], tuple[dict[str, Any], str]]] = {
    "traversal_filename": lambda img: ({"files": {"file": ("../../../../etc/passwd.png", encode(img))}}, "7"),
    "unicode_filename": lambda img: ({"files": {"file": ("٣-シ.png", encode(img))}}, "7"),
    "long_filename": lambda img: ({"files": {"file": ("x" * 5000 + ".png", encode(img))}}, "7"),
    "wrong_extension_jpeg_named_gif": lambda img: (
        {"files": {"file": ("a.gif", encode(img.convert("RGB"), "JPEG"))}},
        "7",
    ),
    "sixteen_bit_png": lambda img: ({"files": {"file": ("a.png", sixteen_bit_png(img))}}, "7"),
    "cmyk_jpeg": lambda img: ({"files": {"file": ("a.jpg", cmyk_jpeg(img))}}, "7"),
    "palette_png_transparency": lambda img: ({"files": {"file": ("a.png", palette_png_with_transparency(img))}}, "7"),
    "exif_rotated_jpeg": lambda img: ({"files": {"file": ("a.jpg", exif_rotated_jpeg(img))}}, "7"),
    "animated_gif_first_frame": lambda img: ({"files": {"file": ("a.gif", animated_gif(img))}}, "7"),
    "json_data_url": lambda img: (
        {"json": {"image": "data:image/png;base64," + base64.b64encode(encode(img)).decode()}},
        "7",
    ),
    "json_urlsafe_base64_unpadded": lambda img: (
        {"json": {"image": base64.urlsafe_b64encode(encode(img)).decode().rstrip("=")}},
        "7",
    ),
    "junk_request_id_header": lambda img: (
        {
            "files": {"file": ("a.png", encode(img))},
            "headers": {"X-Request-ID": "<script>alert(1)</script>; x=" + "y" * 300},
        },
        "7",
    ),
}


@pytest.mark.parametrize("name", sorted(VALID))
def test_odd_but_valid_input_gets_the_right_answer(server, seven, name):
    kwargs, label = VALID[name](seven)
    response = requests.post(server.base + PREDICT, timeout=30, **kwargs)
    assert response.status_code == 200, response.text[:300]
    body = response.json()
    assert top_label(body) == label, body
    if "files" in kwargs:
        filename = first_result(body)["filename"]
        assert len(filename) <= 255 and "\x00" not in filename
    assert_alive(server)


def test_path_traversal_in_urls_reaches_nothing(server):
    """Encoded dot segments under /static and /api never escape: 404, and no file content comes back."""
    for path in ("/static/%2e%2e/%2e%2e/%2e%2e/etc/passwd", "/static/..%2f..%2fapp.py", "/api/v1/%2e%2e/%2e%2e/app.py"):
        with socket.create_connection(("127.0.0.1", server.port), timeout=10) as sock:
            sock.sendall(f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n".encode())
            reply = b""
            while chunk := sock.recv(65536):
                reply += chunk
        assert reply.split(b" ", 2)[1] in (b"400", b"404"), reply[:200]
        assert b"root:" not in reply and b"create_app" not in reply
    assert_alive(server)


def test_nul_byte_filename_and_two_file_parts(server, seven):
    """Two parts, one with a NUL in its filename: both answered in order, nothing written to disk."""
    data = encode(seven)
    body, content_type = multipart(
        [
            ("file", ("a\x00b.png", data, "image/png")),
            ("file", ("../second.png", encode(seven.transpose(Image.Transpose.ROTATE_180)), "image/png")),
        ]
    )
    response = post_raw(server, body, content_type)
    assert response.status_code == 200, response.text[:300]
    first, second = response.json()["results"]
    assert top_label(first) == "7" and "predictions" in second
    assert not any(path.name.endswith(".png") for path in server.home.rglob("*"))
    assert_alive(server)


def test_one_bad_item_in_a_batch_fails_alone(server, seven):
    response = requests.post(
        server.base + PREDICT,
        timeout=30,
        files=[
            ("file", ("good.png", encode(seven))),
            ("file", ("bomb.png", samples.png_header_only_bomb())),
            ("file", ("empty.png", b"")),
        ],
    )
    assert response.status_code == 200, response.text[:300]
    good, bomb, empty = response.json()["results"]
    assert top_label(good) == "7"
    assert bomb["error"]["code"] == "image_too_large" and bomb["status"] == 413
    assert empty["error"]["code"] == "empty_file"
    assert_alive(server)


# ---------------------------------------------------------------- slow senders


def test_slowloris_body_gets_408_and_others_are_served(server, seven):
    """A client trickling its body is cut off after body_timeout; meanwhile other requests are answered."""
    body, content_type = multipart([("file", ("slow.png", encode(seven), "image/png"))])
    head = (
        f"POST {PREDICT} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: {content_type}\r\n"
        f"Content-Length: {len(body)}\r\n\r\n"
    ).encode()
    started = time.monotonic()
    with socket.create_connection(("127.0.0.1", server.port), timeout=15) as sock:
        sock.sendall(head + body[:20])
        sent, answered_meanwhile = 20, False
        sock.settimeout(0.25)
        reply = b""
        while time.monotonic() - started < 4 * BODY_TIMEOUT and sent < len(body):
            try:
                sock.sendall(body[sent : sent + 1])
                sent += 1
            except OSError:
                break  # the server hung up: its answer is waiting to be read
            if not answered_meanwhile:
                assert_alive(server)
                answered_meanwhile = True
            try:
                reply = sock.recv(65536)
                if reply:
                    break
            except TimeoutError:
                pass
        sock.settimeout(10)
        while b"\r\n\r\n" not in reply or not reply.rstrip().endswith(b"}"):
            chunk = sock.recv(65536)
            if not chunk:
                break
            reply += chunk
    elapsed = time.monotonic() - started
    assert answered_meanwhile and sent < len(body), "the slow body was accepted in full"
    status_line, _, rest = reply.partition(b"\r\n")
    assert b" 408 " in status_line, reply[:300]
    assert json.loads(rest.partition(b"\r\n\r\n")[2])["error"]["code"] == "request_timeout"
    assert elapsed < 4 * BODY_TIMEOUT
    assert_alive(server)


def test_no_request_above_ended_in_a_server_error(server):
    """Runs last in this module: the access lines show no 5xx and the log no traceback."""
    log = server.output()
    assert "Traceback" not in log and "unhandled exception" not in log, log[-3000:]
    assert not [line for line in log.splitlines() if " /api/v1/predict 5" in line]
