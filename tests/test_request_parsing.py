"""How request bodies are read (issue 20, items 2, 4 and 5): empty and repeated multipart fields, content types and
encodings, malformed multipart, OPTIONS, and strict JSON."""

from __future__ import annotations

import base64
import gzip
import io
import json
import zlib
from pathlib import Path
from typing import Any

import pytest
from conftest import encode
from PIL import Image

from ai_service import create_app

PREDICT = "/api/v1/predict"
JOBS = "/api/v1/jobs"
BOUNDARY = "testboundary1234"


@pytest.fixture
def png() -> bytes:
    return encode(Image.new("L", (28, 28), 0))


def multipart(fields: list[tuple[str, str]], files: list[tuple[str, bytes]], boundary: str = BOUNDARY) -> bytes:
    """A multipart/form-data body built by hand, so repeated fields and broken bodies can be sent."""
    out = b""
    for name, value in fields:
        out += f'--{boundary}\r\nContent-Disposition: form-data; name="{name}"\r\n\r\n{value}\r\n'.encode()
    for name, data in files:
        head = f'--{boundary}\r\nContent-Disposition: form-data; name="{name}"; filename="x.png"\r\n'
        out += (head + "Content-Type: image/png\r\n\r\n").encode() + data + b"\r\n"
    return out + f"--{boundary}--\r\n".encode()


def post(client, body: bytes, content_type: str = f"multipart/form-data; boundary={BOUNDARY}", **headers: str):
    return client.post(PREDICT, data=body, headers={"Content-Type": content_type, **headers})


def error(response) -> dict[str, Any]:
    assert response.is_json, response.data[:200]
    return response.get_json()["error"]


def json_body(png: bytes, **options: Any) -> bytes:
    return json.dumps({"image": base64.b64encode(png).decode(), **options}).encode()


# --- item 2: empty and absent multipart fields ---------------------------------------------------------------------


@pytest.mark.parametrize("field", ["resample", "fit", "top_k", "output_format", "return"])
def test_an_empty_multipart_value_is_validated_not_taken_as_absent(client, png, field):
    response = post(client, multipart([(field, "")], [("file", png)]))
    assert response.status_code == 422, response.data[:300]
    problem = error(response)
    assert problem["code"] == "validation_error"
    assert [issue["loc"] for issue in problem["details"]] == [[field]]


def test_a_left_out_multipart_field_takes_its_default(client, png):
    assert post(client, multipart([("top_k", "2")], [("file", png)])).status_code == 200


def test_json_null_still_means_the_default(client, png):
    response = post(client, json_body(png, fit=None, top_k=None), "application/json")
    assert response.status_code == 200, response.data[:300]


def schema_at(document: dict[str, Any], schema: dict[str, Any]) -> dict[str, Any]:
    while "$ref" in schema:
        schema = document["components"]["schemas"][schema["$ref"].rsplit("/", 1)[1]]
    return schema


def mentions_null(value: Any) -> bool:
    if isinstance(value, dict):
        return (
            value.get("type") == "null"
            or "null" in (value.get("type") or [])
            or any(mentions_null(item) for key, item in value.items() if key not in ("description", "contentSchema"))
        )
    if isinstance(value, list):
        return any(mentions_null(item) for item in value)
    return False


def test_multipart_schemas_say_fields_are_left_out_never_null(client):
    document = client.get("/api/v1/openapi.json").get_json()
    forms = [
        (path, method, schema_at(document, operation["requestBody"]["content"]["multipart/form-data"]["schema"]))
        for path, item in document["paths"].items()
        for method, operation in item.items()
        if "multipart/form-data" in operation.get("requestBody", {}).get("content", {})
    ]
    assert {path for path, _, _ in forms} >= {"/api/v1/predict", "/api/v1/jobs"}
    for path, method, schema in forms:
        for name, prop in schema["properties"].items():
            assert not mentions_null(prop), (path, method, name, prop)
            assert prop.get("default", "") is not None, (path, method, name, prop)
        assert "empty" in schema.get("description", "").lower(), (path, schema.get("description"))
    predict = schema_at(
        document,
        document["paths"]["/api/v1/predict/json"]["post"]["requestBody"]["content"]["application/json"]["schema"],
    )
    assert mentions_null(predict["properties"]["fit"])  # JSON can send null, and it means "the default"


# --- item 4: content types, encodings, malformed multipart, OPTIONS ------------------------------------------------


def test_urlencoded_is_an_unsupported_media_type(client):
    response = post(client, b"model=digits&top_k=2", "application/x-www-form-urlencoded")
    assert response.status_code == 415
    assert error(response)["code"] == "unsupported_media_type"


def test_urlencoded_jobs_are_an_unsupported_media_type(client):
    response = client.post(JOBS, data=b"model=digits", headers={"Content-Type": "application/x-www-form-urlencoded"})
    assert response.status_code == 415 and error(response)["code"] == "unsupported_media_type"


@pytest.mark.parametrize("coding", ["gzip", "x-gzip", "deflate", "deflate-raw"])
def test_compressed_json_bodies_are_decoded(client, png, coding):
    raw = json_body(png, top_k=2)
    if coding == "deflate-raw":  # what some clients send as "deflate": no zlib header
        packer = zlib.compressobj(wbits=-15)
        data, coding = packer.compress(raw) + packer.flush(), "deflate"
    else:
        data = gzip.compress(raw) if "gzip" in coding else zlib.compress(raw)
    response = post(client, data, "application/json", **{"Content-Encoding": coding})
    assert response.status_code == 200, response.data[:300]
    assert len(response.get_json()["results"][0]["predictions"]) == 2


def test_compressed_multipart_bodies_are_decoded(client, png):
    data = gzip.compress(multipart([("top_k", "2")], [("file", png)]))
    response = post(client, data, **{"Content-Encoding": "gzip"})
    assert response.status_code == 200, response.data[:300]
    assert len(response.get_json()["results"][0]["predictions"]) == 2


def test_the_decoded_size_counts_against_the_limit(home: Path, png):
    client = create_app({"TESTING": True, "home": str(home), "log_to_file": False, "max_upload_mb": 1}).test_client()
    padding = "a" * (3 * 1024 * 1024)  # 3 MiB of text: ~3 KiB compressed, far under the limit on the wire
    bomb = gzip.compress(multipart([("name", padding)], [("file", png)]))
    assert len(bomb) < 64 * 1024
    response = post(client, bomb, **{"Content-Encoding": "gzip"})
    assert response.status_code == 413, response.data[:300]
    assert error(response)["code"] == "payload_too_large"
    as_json = post(
        client, gzip.compress(json_body(png, name=padding)), "application/json", **{"Content-Encoding": "gzip"}
    )
    assert as_json.status_code == 413 and error(as_json)["code"] == "payload_too_large"


def test_jobs_count_the_decoded_size_against_their_own_limit(home: Path, png):
    settings = {"TESTING": True, "home": str(home), "log_to_file": False, "jobs_max_upload_mb": 1}
    client = create_app(settings).test_client()
    bomb = gzip.compress(multipart([], [("file", png + bytes(3 * 1024 * 1024))]))
    response = client.post(
        JOBS,
        data=bomb,
        headers={"Content-Type": f"multipart/form-data; boundary={BOUNDARY}", "Content-Encoding": "gzip"},
    )
    assert response.status_code == 413, response.data[:300]
    problem = error(response)
    assert problem["code"] == "payload_too_large" and "AI_SERVICE_JOBS_MAX_UPLOAD_MB" in problem["message"], problem


def test_unknown_content_encodings_are_refused(client, png):
    for coding in ("br", "compress", "gzip, br"):
        response = post(client, json_body(png), "application/json", **{"Content-Encoding": coding})
        assert response.status_code == 415, (coding, response.data[:300])
        problem = error(response)
        assert problem["code"] == "unsupported_media_type" and "gzip" in problem["message"], problem


def test_identity_encoding_is_the_plain_body(client, png):
    assert post(client, json_body(png), "application/json", **{"Content-Encoding": "identity"}).status_code == 200


def test_a_broken_compressed_body_says_so(client, png):
    data = gzip.compress(json_body(png))[:-40]
    response = post(client, data, "application/json", **{"Content-Encoding": "gzip"})
    assert response.status_code == 400, response.data[:300]
    assert "gzip" in error(response)["message"]
    garbage = post(client, b"not gzip at all", "application/json", **{"Content-Encoding": "gzip"})
    assert garbage.status_code == 400 and "gzip" in error(garbage)["message"]


def test_a_truncated_multipart_body_says_it_is_truncated(client, png):
    body = multipart([("top_k", "2")], [("file", png)])
    response = post(client, body[: len(body) // 2])
    assert response.status_code == 400, response.data[:300]
    problem = error(response)
    assert problem["code"] == "invalid_multipart"
    assert "end" in problem["message"] and "truncated" in problem["message"], problem


def test_a_wrong_boundary_says_the_boundary_is_wrong(client, png):
    response = post(client, multipart([], [("file", png)]), "multipart/form-data; boundary=somethingelse")
    assert response.status_code == 400, response.data[:300]
    problem = error(response)
    assert problem["code"] == "invalid_multipart" and "boundary" in problem["message"], problem
    missing = post(client, multipart([], [("file", png)]), "multipart/form-data")
    assert missing.status_code == 400 and "boundary" in error(missing)["message"]


def test_an_empty_multipart_body_is_still_missing_file(client):
    response = post(client, f"--{BOUNDARY}--\r\n".encode())
    assert response.status_code == 400 and error(response)["code"] == "missing_file"
    for body, code in ((b"", "missing_file"), (f"--{BOUNDARY}\r\nbroken".encode(), "invalid_multipart")):
        chunked = client.post(  # no Content-Length: only the bytes tell an empty body from a broken one
            PREDICT,
            input_stream=io.BytesIO(body),
            environ_base={"wsgi.input_terminated": True},
            headers={"Content-Type": f"multipart/form-data; boundary={BOUNDARY}", "Transfer-Encoding": "chunked"},
        )
        assert chunked.status_code == 400 and error(chunked)["code"] == code, (body, chunked.data[:300])


def test_options_answers_without_html(client):
    for path in (PREDICT, "/api/v1/models", "/"):
        response = client.options(path)
        assert response.status_code == 200
        assert "POST" in response.headers["Allow"] or "GET" in response.headers["Allow"]
        assert response.mimetype != "text/html", path
        assert "script-src" not in response.headers["Content-Security-Policy"], path
        assert response.data == b""


# --- item 5: strict JSON, repeated fields, NaN ---------------------------------------------------------------------


@pytest.mark.parametrize(
    "options",
    [{"top_k": True}, {"top_k": "2"}, {"top_k": 2.0}, {"quality": "90"}, {"score_threshold": "0.5"}, {"fit": 1}],
)
def test_json_types_are_strict(client, png, options):
    response = post(client, json_body(png, **options), "application/json")
    assert response.status_code == 422, (options, response.data[:300])
    problem = error(response)
    assert problem["code"] == "validation_error"
    assert [issue["loc"] for issue in problem["details"]] == [[next(iter(options))]]


def test_json_floats_take_integers(client, png):
    response = post(client, json_body(png, score_threshold=1, top_k=2), "application/json")
    assert response.status_code == 200, response.data[:300]


def test_jobs_json_is_strict_too(client, png):
    body = json.dumps({"images": [base64.b64encode(png).decode()], "top_k": True}).encode()
    response = client.post(JOBS, data=body, headers={"Content-Type": "application/json"})
    assert response.status_code == 422 and error(response)["details"][0]["loc"] == ["top_k"]


@pytest.mark.parametrize("constant", ["NaN", "Infinity", "-Infinity"])
def test_nan_and_infinity_are_invalid_json(client, png, constant):
    text = json_body(png).decode()[:-1] + f', "score_threshold": {constant}}}'
    response = post(client, text.encode(), "application/json")
    assert response.status_code == 400, response.data[:300]
    problem = error(response)
    assert problem["code"] == "invalid_json" and constant.lstrip("-") in problem["message"], problem


def test_repeated_json_members_are_invalid_json(client, png):
    text = json_body(png, model="digits").decode()[:-1] + ', "model": "other"}'
    response = post(client, text.encode(), "application/json")
    assert response.status_code == 400
    problem = error(response)
    assert problem["code"] == "invalid_json" and "model" in problem["message"], problem


def test_repeated_multipart_fields_are_refused(client, png):
    response = post(client, multipart([("model", "digits"), ("model", "other"), ("top_k", "2")], [("file", png)]))
    assert response.status_code == 422, response.data[:300]
    problem = error(response)
    assert problem["code"] == "validation_error"
    assert [issue["loc"] for issue in problem["details"]] == [["model"]]
    assert problem["details"][0]["type"] == "duplicate_field"


def test_repeated_multipart_fields_are_refused_by_jobs(client, png):
    body = multipart([("top_k", "1"), ("top_k", "2")], [("file", png)])
    response = client.post(JOBS, data=body, headers={"Content-Type": f"multipart/form-data; boundary={BOUNDARY}"})
    assert response.status_code == 422 and error(response)["details"][0]["loc"] == ["top_k"]


def test_repeated_file_parts_are_still_a_batch(client, png):
    response = post(client, multipart([], [("file", png), ("file", png)]))
    assert response.status_code == 200 and len(response.get_json()["results"]) == 2


def test_encodings_and_broken_multipart_under_gunicorn(tmp_path: Path, png):
    """The same rules behind gunicorn's body deadline (its own `wsgi.input`) and over a real socket."""
    import requests
    from live_gunicorn import running_gunicorn

    with running_gunicorn(tmp_path, workers=1, threads=2, max_upload_mb=1) as server:
        url = server.base + PREDICT
        kind = {"Content-Type": f"multipart/form-data; boundary={BOUNDARY}"}
        packed = gzip.compress(multipart([("top_k", "2")], [("file", png)]))
        ok = requests.post(url, data=packed, headers={**kind, "Content-Encoding": "gzip"}, timeout=60)
        assert ok.status_code == 200 and len(ok.json()["results"][0]["predictions"]) == 2, ok.text[:300]
        bomb = gzip.compress(multipart([], [("file", png + bytes(3 * 1024 * 1024))]))
        big = requests.post(url, data=bomb, headers={**kind, "Content-Encoding": "gzip"}, timeout=60)
        assert big.status_code == 413 and big.json()["error"]["code"] == "payload_too_large", big.text[:300]
        body = multipart([], [("file", png)])
        cut = requests.post(url, data=body[: len(body) // 2], headers=kind, timeout=60)
        assert cut.status_code == 400 and cut.json()["error"]["code"] == "invalid_multipart", cut.text[:300]
        text = json_body(png).decode()[:-1] + ', "score_threshold": NaN}'
        nan = requests.post(url, data=text, headers={"Content-Type": "application/json"}, timeout=60)
        assert nan.status_code == 400 and nan.json()["error"]["code"] == "invalid_json", nan.text[:300]


# --- issue 20, item 7: one documented body type per operation; the old paths keep both -----------------------------


def test_json_twins_take_json_and_the_old_paths_still_take_both(client, png):
    headers = {"Content-Type": "application/json"}
    for path in (PREDICT, PREDICT + "/json"):
        answer = client.post(path, data=json_body(png, model="digits"), headers=headers)
        assert answer.status_code == 200, (path, answer.data[:300])
        assert answer.get_json()["results"][0]["predictions"]
    assert post(client, multipart([("model", "digits")], [("file", png)])).status_code == 200
    refused = client.post(
        PREDICT + "/json",
        data=multipart([("model", "digits")], [("file", png)]),
        headers={"Content-Type": f"multipart/form-data; boundary={BOUNDARY}"},
    )
    assert refused.status_code == 415 and error(refused)["code"] == "unsupported_media_type"
    images = json.dumps({"model": "digits", "images": [base64.b64encode(png).decode()]})
    for path in (JOBS, JOBS + "/json"):
        answer = client.post(path, data=images, headers=headers)
        assert answer.status_code == 202, (path, answer.data[:300])
        assert answer.headers["Location"].endswith(answer.get_json()["id"])
    refused = client.post(
        JOBS + "/json",
        data=multipart([("model", "digits")], [("file", png)]),
        headers={"Content-Type": f"multipart/form-data; boundary={BOUNDARY}"},
    )
    assert refused.status_code == 415 and error(refused)["code"] == "unsupported_media_type"
    allowed = {method.strip() for method in client.options(JOBS + "/json").headers["Allow"].split(",")}
    assert allowed == {"POST", "OPTIONS"}  # not a job id: job ids are 32 characters
    assert client.get(JOBS + "/json").status_code == 405
