"""POST /api/v1/convert is validated through pydantic like /predict (issue 20, item 3): a discriminated union on
`op`, unknown fields refused, and every bad value a 422 `validation_error` whose details list the fields."""

from __future__ import annotations

import io
import json

import imaging_samples as S
import pytest

URL = "/api/v1/convert"
OPS = ("to_gray", "colorspace", "flatten_alpha", "color_key", "resize")


def post(client, operations=None, **fields):
    form = {"file": (io.BytesIO(S.encode(S.random_rgb(8, 8), "PNG")), "a.png"), **fields}
    if operations is not None:
        form["operations"] = operations if isinstance(operations, str) else json.dumps(operations)
    return client.post(URL, data=form, content_type="multipart/form-data")


def issues(response) -> list[dict]:
    """The `validation_error` details of a 422, checked to be the documented {loc, msg, type} list."""
    assert response.status_code == 422, response.get_data(as_text=True)
    error = response.get_json()["error"]
    assert error["code"] == "validation_error", error
    assert isinstance(error["details"], list) and error["details"], error
    assert all(set(item) == {"loc", "msg", "type"} for item in error["details"]), error
    return error["details"]


def test_an_unknown_form_field_is_refused_not_ignored(client) -> None:
    """`-F formt=webp` (a typo) used to answer 200 with a PNG."""
    found = issues(post(client, formt="webp"))
    assert found == [{"loc": ["formt"], "msg": "Extra inputs are not permitted", "type": "extra_forbidden"}]


@pytest.mark.parametrize(
    ("operations", "fields", "loc"),
    [
        ("not json", {}, ["operations"]),
        ([{"op": "blur"}], {}, ["operations", 0, "op"]),
        ([{"width": 3}], {}, ["operations", 0, "op"]),
        ([{"op": "resize"}], {}, ["operations", 0]),
        ([{"op": "resize", "width": 0}], {}, ["operations", 0, "width"]),
        ([{"op": "resize", "width": "abc"}], {}, ["operations", 0, "width"]),
        ([{"op": "resize", "width": 2.5}], {}, ["operations", 0, "width"]),
        ([{"op": "resize", "width": 10, "fit": "zoom"}], {}, ["operations", 0, "fit"]),
        ([{"op": "resize", "width": 10, "filter": "hamming"}], {}, ["operations", 0, "filter"]),
        ([{"op": "resize", "width": 8000, "height": 8000}], {}, ["operations", 0]),
        ([{"op": "to_gray"}, {"op": "color_key", "tolerance": -1}], {}, ["operations", 1, "tolerance"]),
        ([{"op": "color_key", "color": "notacolor"}], {}, ["operations", 0, "color"]),
        ([{"op": "flatten_alpha", "bg": "#fff"}], {}, ["operations", 0, "bg"]),
        ([{"op": "colorspace", "space": "cmyk"}], {}, ["operations", 0, "space"]),
        ([{"op": "to_gray", "keep_alpha": "maybe"}], {}, ["operations", 0, "keep_alpha"]),
        ([{"op": "to_gray"}] * 21, {}, ["operations"]),
        ("[1]", {}, ["operations", 0]),
        ('{"op": "to_gray"}', {}, ["operations"]),
        (None, {"format": "gif"}, ["format"]),
        (None, {"quality": "0"}, ["quality"]),
        (None, {"quality": "high"}, ["quality"]),
        (None, {"response": "xml"}, ["response"]),
        (None, {"download": "maybe"}, ["download"]),
    ],
)
def test_bad_values_are_validation_errors_with_the_field_list(client, operations, fields, loc) -> None:
    found = issues(post(client, operations, **fields))
    assert [item["loc"] for item in found] == [loc], found
    message = post(client, operations, **fields).get_json()["error"]["message"]
    path = "".join(f"[{part}]" if isinstance(part, int) else f".{part}" for part in loc).lstrip(".")
    assert message.startswith(f"Invalid request: {path}: "), message


def test_every_problem_is_listed_at_once(client) -> None:
    found = issues(post(client, [{"op": "resize", "width": 0, "fitt": "crop"}], format="gif", colour="red"))
    assert sorted(map(str, (item["loc"] for item in found))) == sorted(
        map(str, (["operations", 0, "width"], ["operations", 0, "fitt"], ["format"], ["colour"]))
    )


def test_a_result_over_the_pixel_budget_names_the_operation(home) -> None:
    """Only known once the image is decoded (one side given), yet reported like every other bad value."""
    from ai_service import create_app

    client = create_app({"TESTING": True, "home": str(home), "max_pixels": 10_000}).test_client()
    form = {
        "file": (io.BytesIO(S.encode(S.random_rgb(10, 100), "PNG")), "a.png"),
        "operations": json.dumps([{"op": "resize", "height": 99}]),
    }
    found = issues(client.post(URL, data=form, content_type="multipart/form-data"))
    assert [item["loc"] for item in found] == [["operations", 0, "width"]]


def test_valid_requests_keep_working_and_echo_the_operations(client) -> None:
    ops = [
        {"op": "color_key", "color": [255, 255, 255], "tolerance": "5"},
        {"op": "resize", "width": 4, "height": 4, "fit": "letterbox", "pad_color": "transparent"},
        {"op": "to_gray", "keep_alpha": "on"},
    ]
    r = post(client, ops, format="JPG", quality="80", response="json", download="true")
    assert r.status_code == 200, r.get_json()
    body = r.get_json()
    assert body["format"] == "jpeg" and body["filename"] == "a-converted.jpg"
    assert body["operations"] == [
        {"op": "color_key", "color": "#ffffff", "tolerance": 5, "softness": 0, "metric": "max"},
        {"op": "resize", "width": 4, "height": 4, "fit": "letterbox", "filter": "lanczos", "pad_color": None},
        {"op": "to_gray", "weights": "bt601", "keep_alpha": True},
    ]
    assert post(client, "[]", format="webp").status_code == 200


def test_the_document_describes_the_operation_union(client) -> None:
    document = client.get("/api/v1/openapi.json").get_json()
    schemas = document["components"]["schemas"]
    form = schemas["ConvertForm"]
    assert form["additionalProperties"] is False and form["required"] == ["file"]
    operations = form["properties"]["operations"]
    assert operations["type"] == "string" and operations["contentMediaType"] == "application/json"
    content = operations["contentSchema"]
    assert content["type"] == "array" and content["maxItems"] == 20
    union = content["items"]
    assert union["discriminator"]["propertyName"] == "op"
    mapping = union["discriminator"]["mapping"]
    assert sorted(mapping) == sorted(OPS)
    assert sorted(member["$ref"] for member in union["oneOf"]) == sorted(mapping.values())
    for op, ref in mapping.items():
        member = schemas[ref.rsplit("/", 1)[1]]
        assert member["additionalProperties"] is False and member["required"][0] == "op"
        assert member["properties"]["op"]["const"] == op
    resize = schemas[mapping["resize"].rsplit("/", 1)[1]]["properties"]
    assert resize["width"]["anyOf"][0]["maximum"] == 8192
    assert set(resize["fit"]["enum"]) == {"stretch", "letterbox", "crop"}


def test_the_literals_match_the_imaging_constants() -> None:
    """The schema module stays free of PIL/cv2, so its choices are spelled out; they must not drift."""
    from typing import get_args

    from ai_service.imaging.color import SPACES
    from ai_service.imaging.resize import FILTERS, FIT_MODES
    from ai_service.schemas import convert as cs

    assert get_args(cs.FitMode) == FIT_MODES and get_args(cs.Filter) == FILTERS
    assert get_args(cs.ColorSpace) == tuple(s for s in SPACES if s != "rgb")
