"""POST /api/v1/meshes/inspect, /render, /convert and /predict with a 3D model, through the app's test client:
the answers, the error table's codes for hostile uploads, and the per-endpoint body limit."""

from __future__ import annotations

import base64
import io
import math
import zipfile

import numpy as np
import pytest
from PIL import Image

pytest.importorskip("trimesh")

import mesh_samples as samples  # noqa: E402

from ai_service import create_app  # noqa: E402


@pytest.fixture(scope="module")
def shared(tmp_path_factory):
    """One app for the many refusal cases (each needs no state of its own)."""
    app = create_app({"TESTING": True, "home": str(tmp_path_factory.mktemp("meshes") / "home")})
    yield app.test_client()
    app.extensions["ai_service"].close()


def post(client, path: str, data: bytes, filename: str = "model.glb", **fields):
    return client.post(path, data={"file": (io.BytesIO(data), filename), **fields})


def png(data_url: str) -> Image.Image:
    return Image.open(io.BytesIO(base64.b64decode(data_url.split(",", 1)[1])))


def test_inspect_answers_the_facts(client):
    response = post(client, "/api/v1/meshes/inspect", samples.encode(samples.scene(), "glb"), "scene.glb")
    assert response.status_code == 200
    body = response.get_json()
    assert (body["vertices"], body["faces"], body["parts"]) == (658, 1304, 3)
    assert body["bounds"] == [[-4.0, -1.0, -1.0], [3.5, 2.0, 1.0]]
    assert body["volume"] == pytest.approx(13.152741) and body["watertight"] is True
    assert body["name"] == "scene.glb" and body["units"] == "m"


def test_inspect_a_zipped_obj_with_outside_references(client):
    data = samples.obj_referencing("model.mtl", "/etc/passwd")
    body = post(client, "/api/v1/meshes/inspect", data, "evil.zip").get_json()
    assert body["zipped"] is True and body["faces"] == 1
    assert body["ignored_references"] == [{"name": "/etc/passwd", "reason": "not part of the upload; never opened"}]


def test_render_turntable_as_json(client):
    response = post(client, "/api/v1/meshes/render", samples.encode(samples.cube(), "stl"), "cube.stl", size="64")
    assert response.status_code == 200
    body = response.get_json()
    assert [view["name"] for view in body["views"]] == [f"turntable-{i}" for i in range(8)]
    assert [view["azimuth"] for view in body["views"]] == [45.0 * i for i in range(8)]
    first = png(body["views"][0]["image"])
    assert first.format == "PNG" and first.mode == "RGBA" and first.size == (64, 64)
    assert np.asarray(first)[0, 0, 3] == 0
    assert body["mesh"]["faces"] == 12 and body["timing_ms"]["render"] > 0


def test_render_one_view_as_png_with_a_background(client):
    data = samples.encode(samples.cube(), "glb")
    response = post(
        client, "/api/v1/meshes/render", data, views="front", response="image", background="white", antialias="false"
    )
    assert response.status_code == 200 and response.mimetype == "image/png"
    image = Image.open(io.BytesIO(response.data))
    assert image.mode == "RGB" and image.getpixel((0, 0)) == (255, 255, 255)
    scale = float(response.headers["X-Mesh-Scale"])
    dark = (np.asarray(image).sum(axis=2) < 700).sum()
    assert dark == pytest.approx(scale**2, rel=0.03)  # the unit cube's face: scale x scale pixels


def test_render_sphere_silhouette(client):
    data = samples.encode(samples.trimesh_sphere(5), "ply")
    body = post(client, "/api/v1/meshes/render", data, "ball.ply", views="front,top,iso", size="200").get_json()
    for view in body["views"]:
        covered = (np.asarray(png(view["image"]))[..., 3] >= 128).sum()
        assert covered == pytest.approx(math.pi * body["scale"] ** 2, rel=0.02)


@pytest.mark.parametrize(
    ("fields", "loc"),
    [
        ({"views": "sideways"}, "views"),
        ({"views": "0"}, "views"),
        ({"size": "8"}, "size"),
        ({"background": "not-a-color"}, "background"),
        ({"views": "8", "response": "image"}, "response"),
        ({"colour": "red"}, "colour"),
    ],
)
def test_render_validates_fields(shared, fields, loc):
    response = post(shared, "/api/v1/meshes/render", samples.encode(samples.cube(), "glb"), **fields)
    assert response.status_code == 422
    error = response.get_json()["error"]
    assert error["code"] == "validation_error" and error["details"][0]["loc"][0] == loc


def test_render_limits_views_and_size_by_settings(tmp_path):
    app = create_app({"TESTING": True, "home": str(tmp_path / "home"), "mesh_max_views": 4, "mesh_max_render_size": 64})
    try:
        client = app.test_client()
        response = post(client, "/api/v1/meshes/render", samples.encode(samples.cube(), "glb"), views="8", size="128")
        assert response.status_code == 422
        assert [issue["loc"] for issue in response.get_json()["error"]["details"]] == [["views"], ["size"]]
    finally:
        app.extensions["ai_service"].close()


@pytest.mark.parametrize("target", ["glb", "obj", "stl", "ply"])
def test_convert_round_trip(client, target):
    data = samples.encode(samples.scene(), "glb")
    response = client.post(f"/api/v1/meshes/convert?format={target}", data={"file": (io.BytesIO(data), "scene.glb")})
    assert response.status_code == 200
    extension = "zip" if target == "obj" else target
    assert f'filename="scene.{extension}"' in response.headers["Content-Disposition"]
    again = post(client, "/api/v1/meshes/inspect", response.data, f"scene.{extension}").get_json()
    assert (again["vertices"], again["faces"]) == (658, 1304)
    assert again["bounds"] == [[-4.0, -1.0, -1.0], [3.5, 2.0, 1.0]]


def test_convert_obj_is_a_zip_with_material_and_texture(client):
    data = samples.encode(samples.textured_quad(), "glb")
    response = client.post("/api/v1/meshes/convert?format=obj", data={"file": (io.BytesIO(data), "quad.glb")})
    assert response.mimetype == "application/zip"
    names = zipfile.ZipFile(io.BytesIO(response.data)).namelist()
    assert {"quad.obj", "quad.mtl"} <= set(names) and any(name.endswith(".png") for name in names)


def test_convert_needs_a_known_format(client):
    data = samples.encode(samples.cube(), "glb")
    for query in ("", "?format=fbx"):
        response = client.post(f"/api/v1/meshes/convert{query}", data={"file": (io.BytesIO(data), "c.glb")})
        assert response.status_code == 422
        assert response.get_json()["error"]["details"][0]["loc"] == ["query", "format"]


@pytest.mark.parametrize(
    ("data", "filename", "status", "code"),
    [
        (samples.stl_declaring(10**9), "huge.stl", 413, "mesh_too_large"),
        (samples.ply_declaring(10**9), "huge.ply", 413, "mesh_too_large"),
        (samples.glb_declaring(10**9), "huge.glb", 413, "mesh_too_large"),
        (samples.encode(samples.cube(), "glb")[:300], "cut.glb", 422, "invalid_mesh"),
        (samples.gltf_pointing_at("file:///etc/passwd"), "x.gltf", 422, "unsafe_mesh"),
        (samples.gltf_pointing_at("http://127.0.0.1:9/b.bin"), "x.gltf", 422, "unsafe_mesh"),
        (samples.zip_bomb(16), "bomb.zip", 422, "unsafe_mesh"),
        (b"not a model at all", "x.txt", 415, "unsupported_format"),
        (b"", "empty.glb", 400, "empty_file"),
    ],
)
@pytest.mark.parametrize(
    "path", ["/api/v1/meshes/inspect", "/api/v1/meshes/render", "/api/v1/meshes/convert?format=stl"]
)
def test_hostile_models_are_refused_with_their_code(shared, path, data, filename, status, code):
    response = post(shared, path, data, filename)
    assert response.status_code == status
    assert response.get_json()["error"]["code"] == code


def test_missing_file_and_wrong_body(client):
    response = client.post("/api/v1/meshes/inspect", data={})
    assert response.status_code == 400 and response.get_json()["error"]["code"] == "missing_file"
    response = client.post("/api/v1/meshes/inspect", json={"file": "x"})
    assert response.status_code == 415


def test_mesh_uploads_may_exceed_the_image_body_limit(tmp_path):
    """Models outgrow AI_SERVICE_MAX_UPLOAD_MB; their own limit applies, named in the 413."""
    app = create_app(
        {"TESTING": True, "home": str(tmp_path / "home"), "max_upload_mb": 0.01, "mesh_max_upload_mb": 0.2}
    )
    try:
        client = app.test_client()
        sphere = samples.encode(samples.sphere(), "stl")  # ~64 KB: over the image limit, under the mesh one
        assert 0.01 * 2**20 < len(sphere) < 0.2 * 2**20
        assert post(client, "/api/v1/meshes/inspect", sphere, "s.stl").status_code == 200
        big = samples.encode(samples.trimesh_sphere(5), "stl")  # ~1 MB
        response = post(client, "/api/v1/meshes/inspect", big, "big.stl")
        assert response.status_code == 413
        assert response.get_json()["error"]["details"]["setting"] == "AI_SERVICE_MESH_MAX_UPLOAD_MB"
    finally:
        app.extensions["ai_service"].close()


# --- /predict with a 3D model ---------------------------------------------------------------------------------


def test_predict_renders_the_views_and_averages_them(client):
    data = samples.encode(samples.scene(), "glb")
    response = post(client, "/api/v1/predict", data, "scene.glb", views="4", size="64", top_k="10")
    assert response.status_code == 200
    result = response.get_json()["results"][0]
    assert result["filename"] == "scene.glb" and result["mesh"]["faces"] == 1304
    assert [view["view"] for view in result["views"]] == [f"turntable-{i}" for i in range(4)]
    assert all(view["width"] == 64 and len(view["predictions"]) == 10 for view in result["views"])
    assert result["aggregate"] == {"method": "mean over views", "views": 4}
    # the digits model has 10 labels and top_k=10 lists them all, so the mean is exact
    for prediction in result["predictions"]:
        scores = [
            next(p["score"] for p in view["predictions"] if p["label"] == prediction["label"])
            for view in result["views"]
        ]
        assert prediction["score"] == pytest.approx(sum(scores) / 4, abs=1e-5)
    assert [p["score"] for p in result["predictions"]] == sorted(
        (p["score"] for p in result["predictions"]), reverse=True
    )


def test_predict_mixes_meshes_images_and_bad_meshes_in_one_batch(client):
    with open("ai_service/models/builtin/examples/handwritten-7.png", "rb") as image:
        seven = image.read()
    files = [
        (io.BytesIO(samples.encode(samples.cube(), "stl")), "cube.stl"),
        (io.BytesIO(seven), "seven.png"),
        (io.BytesIO(samples.stl_declaring(10**9)), "huge.stl"),
    ]
    response = client.post("/api/v1/predict", data={"file": files, "views": "front,iso"})
    assert response.status_code == 200
    cube, image, huge = response.get_json()["results"]
    assert [view["view"] for view in cube["views"]] == ["front", "iso"] and cube["index"] == 0
    assert image["index"] == 1 and image["predictions"][0]["label"] == "7" and "views" not in image
    assert huge["index"] == 2 and huge["status"] == 413 and huge["error"]["code"] == "mesh_too_large"
    assert huge["filename"] == "huge.stl"


def test_predict_json_body_takes_a_base64_mesh(client):
    data = base64.b64encode(samples.encode(samples.cube(), "glb")).decode()
    response = client.post("/api/v1/predict/json", json={"image": data, "views": 2, "size": 32})
    assert response.status_code == 200
    assert len(response.get_json()["results"][0]["views"]) == 2


def test_predict_single_bad_mesh_fails_as_a_whole(client):
    response = post(client, "/api/v1/predict", samples.gltf_pointing_at("/etc/passwd"), "x.gltf")
    assert response.status_code == 422 and response.get_json()["error"]["code"] == "unsafe_mesh"


def test_predict_return_image_on_a_mesh_asks_for_json(client):
    """An image-to-image model on a 3D model answers one image per view: return=image is a 422, not a 500."""
    data = samples.encode(samples.cube(), "stl")
    response = post(
        client, "/api/v1/predict", data, "cube.stl", model="edges", views="2", size="32", **{"return": "image"}
    )
    assert response.status_code == 422
    error = response.get_json()["error"]
    assert error["code"] == "validation_error" and error["details"][0]["loc"] == ["return"]
