"""ai_service.meshes on models generated here with trimesh: exact facts in every format, silhouettes of known size,
conversion round trips, and hostile files refused from their headers, quickly, without opening anything else."""

from __future__ import annotations

import io
import math
import time
import zipfile

import numpy as np
import pytest

pytest.importorskip("trimesh")

import mesh_samples as samples  # noqa: E402

from ai_service.meshes.errors import MeshError  # noqa: E402
from ai_service.meshes.export import export_model  # noqa: E402
from ai_service.meshes.facts import inspect_model  # noqa: E402
from ai_service.meshes.limits import MIB, MeshLimits  # noqa: E402
from ai_service.meshes.load import load_model  # noqa: E402
from ai_service.meshes.render import NAMED_VIEWS, named_views, render_views, turntable  # noqa: E402
from ai_service.meshes.sniff import sniff_mesh  # noqa: E402
from ai_service.schemas.meshes import VIEW_NAMES  # noqa: E402

LIMITS = MeshLimits()
#: name -> (builder, vertices, faces, bounds, area, volume or None)
EXPECTED = {
    "cube": (samples.cube, 8, 12, [[-0.5] * 3, [0.5] * 3], 6.0, 1.0),
    "sphere": (samples.sphere, 642, 1280, [[-1.0] * 3, [1.0] * 3], 12.506493, 4.152741),
    "quad": (samples.textured_quad, 4, 2, [[0, 0, 0], [1, 1, 0]], 1.0, None),
    "scene": (samples.scene, 658, 1304, [[-4, -1, -1], [3.5, 2, 1]], 42.506493, 13.152741),
}


def facts(data: bytes, filename: str = "", limits: MeshLimits = LIMITS) -> dict:
    return inspect_model(load_model(data, limits, filename))


@pytest.mark.parametrize("fmt", samples.FORMATS)
@pytest.mark.parametrize("name", EXPECTED)
def test_facts_are_exact_in_every_format(name, fmt):
    build, vertices, faces, bounds, area, volume = EXPECTED[name]
    found = facts(samples.encode(build(), fmt))
    assert found["format"] == fmt.split("-")[0]
    assert (found["vertices"], found["faces"]) == (vertices, faces)
    np.testing.assert_allclose(found["bounds"], bounds, atol=1e-6)
    np.testing.assert_allclose(found["extents"], np.ptp(bounds, axis=0), atol=1e-6)
    assert found["surface_area"] == pytest.approx(area, abs=1e-5)
    assert found["watertight"] is (volume is not None)
    assert found["volume"] == (pytest.approx(volume, abs=1e-5) if volume is not None else None)
    assert found["ignored_references"] == []


def test_scene_is_flattened_with_its_transforms():
    found = facts(samples.encode(samples.scene(), "glb"))
    assert found["parts"] == 3
    assert found["units"] == "m"  # glTF's unit by specification
    # area-weighted centre: the 2x cube (area 24) at x=-3 pulls it left of the origin
    assert found["centroid"][0] < -1.0


def test_textured_obj_zip_reports_its_material_and_texture():
    found = facts(samples.encode(samples.textured_quad(), "obj"), "quad.zip")
    assert found["zipped"] is True and found["name"] == "model.obj"
    assert [m["name"] for m in found["materials"]] == ["checker"] and found["materials"][0]["textured"]
    assert found["textures"][0]["width"] == 8 and found["textures"][0]["file"].endswith(".png")


def test_units_comment_is_read():
    obj = b"# units: millimeters\nv 0 0 0\nv 1 0 0\nv 0 1 0\nf 1 2 3\n"
    assert facts(obj)["units"] == "mm"


def test_sniffing_needs_no_file_name():
    assert sniff_mesh(samples.encode(samples.cube(), "glb")) == "glb"
    assert sniff_mesh(samples.encode(samples.cube(), "gltf")) == "gltf"
    assert sniff_mesh(samples.encode(samples.cube(), "obj")) == "obj"
    assert sniff_mesh(samples.encode(samples.cube(), "stl")) == "stl"
    assert sniff_mesh(samples.encode(samples.cube(), "stl-ascii")) == "stl"
    assert sniff_mesh(samples.encode(samples.cube(), "ply")) == "ply"
    assert sniff_mesh(samples.encode(samples.textured_quad(), "obj")) == "zip"
    assert sniff_mesh(b"\x89PNG\r\n\x1a\n" + b"\0" * 100) is None
    assert sniff_mesh(b"<svg xmlns='http://www.w3.org/2000/svg'/>") is None
    assert sniff_mesh(b"hello world\n") is None


def test_view_names_match_the_schema():
    assert set(VIEW_NAMES) == set(NAMED_VIEWS)


# --- rendering ------------------------------------------------------------------------------------------------


def alpha(image) -> np.ndarray:
    return np.asarray(image.convert("RGBA"))[..., 3]


def test_unit_cube_from_the_front_fills_a_known_square():
    model = load_model(samples.encode(samples.cube(), "glb"), LIMITS)
    view = render_views(model, named_views(["front"]), size=200, antialias=False)[0]
    # bounding sphere of the box: radius sqrt(3)/2, 5% margins -> scale = 200 * 0.9 / sqrt(3) pixels per unit
    assert view.scale == pytest.approx(200 * 0.9 / math.sqrt(3))
    side = view.scale  # the cube is 1 unit wide
    ys, xs = np.nonzero(alpha(view.image))
    low, high = 100 - side / 2, 100 + side / 2  # pixel centres i + 0.5 inside [low, high]
    expected = np.arange(math.ceil(low - 0.5), math.floor(high - 0.5) + 1)
    assert (xs.min(), xs.max()) == (expected[0], expected[-1])
    assert (ys.min(), ys.max()) == (expected[0], expected[-1])
    assert len(xs) == len(expected) ** 2  # a full square, no holes


def test_sphere_silhouette_area_is_pi_r_squared():
    model = load_model(samples.encode(samples.trimesh_sphere(5), "stl"), LIMITS)
    for view in render_views(model, [*named_views(["front", "top"]), *turntable(3)], size=256):
        covered = (alpha(view.image) >= 128).sum()
        assert covered == pytest.approx(math.pi * view.scale**2, rel=0.02)


def test_views_are_lit_shaded_and_transparent_around():
    model = load_model(samples.encode(samples.sphere(), "glb"), LIMITS)
    image = render_views(model, named_views(["iso"]), size=128)[0].image
    assert image.mode == "RGBA" and image.size == (128, 128)
    pixels = np.asarray(image)
    assert pixels[0, 0, 3] == 0  # corners are background
    inside = pixels[alpha(image) == 255][:, :3].astype(int).sum(axis=1)
    assert inside.max() - inside.min() > 150  # shading: lit and shadowed sides differ


def test_background_color_and_colors_of_the_model():
    model = load_model(samples.encode(samples.scene(), "glb"), LIMITS)
    image = render_views(model, named_views(["front"]), size=256, background=(255, 255, 255))[0].image
    pixels = np.asarray(image)
    assert image.mode == "RGB" and tuple(pixels[0, 0]) == (255, 255, 255)
    row = pixels[128]
    reds = (row[:, 0] > 120) & (row[:, 2] < 80)
    blues = (row[:, 2] > 120) & (row[:, 0] < 80)
    assert reds.any() and blues.any()
    assert np.flatnonzero(blues).mean() < np.flatnonzero(reds).mean()  # blue cube at x=-3, red at x=+3


def test_texture_is_sampled():
    model = load_model(samples.encode(samples.textured_quad(), "glb"), LIMITS)
    pixels = np.asarray(render_views(model, named_views(["front"]), size=128, antialias=False)[0].image)
    covered = pixels[pixels[..., 3] == 255][:, :3].astype(int)
    reds = ((covered[:, 0] > 100) & (covered[:, 2] < 60)).mean()
    blues = ((covered[:, 2] > 100) & (covered[:, 0] < 60)).mean()
    assert 0.35 < reds < 0.65 and 0.35 < blues < 0.65  # a checkerboard: half red, half blue


def test_z_up_turns_the_model():
    tall = samples.trimesh_box((1.0, 1.0, 3.0))  # tall along Z
    model = load_model(samples.encode(tall, "stl"), LIMITS)
    y_up = render_views(model, named_views(["front"]), size=128, up="y")[0]
    z_up = render_views(model, named_views(["front"]), size=128, up="z")[0]
    ys, xs = np.nonzero(alpha(z_up.image))
    assert np.ptp(ys) > 2.5 * np.ptp(xs)  # Z is up: tall in the picture
    ys, xs = np.nonzero(alpha(y_up.image))
    assert abs(np.ptp(ys) - np.ptp(xs)) <= 2  # looking down Z: a square


# --- conversion ----------------------------------------------------------------------------------------------


@pytest.mark.parametrize("target", ["glb", "obj", "stl", "ply"])
@pytest.mark.parametrize("name", EXPECTED)
def test_conversion_round_trip_keeps_counts_and_bounds(name, target):
    build, vertices, faces, bounds, _, _ = EXPECTED[name]
    exported = export_model(load_model(samples.encode(build(), "glb"), LIMITS, f"{name}.glb"), target)
    assert exported.filename == f"{name}{'.zip' if target == 'obj' else '.' + target}"
    again = facts(exported.data, exported.filename)
    assert (again["vertices"], again["faces"]) == (vertices, faces)
    np.testing.assert_allclose(again["bounds"], bounds, atol=1e-6)


def test_obj_conversion_zips_material_and_texture():
    exported = export_model(load_model(samples.encode(samples.textured_quad(), "glb"), LIMITS, "quad.glb"), "obj")
    names = zipfile.ZipFile(io.BytesIO(exported.data)).namelist()
    assert "quad.obj" in names and "quad.mtl" in names and any(name.endswith(".png") for name in names)
    assert facts(exported.data)["textures"][0]["width"] == 8


# --- hostile files -------------------------------------------------------------------------------------------


def refused(data: bytes, filename: str = "", limits: MeshLimits = LIMITS) -> MeshError:
    started = time.perf_counter()
    with pytest.raises(MeshError) as caught:
        load_model(data, limits, filename)
    assert time.perf_counter() - started < 1.0  # refused from the headers, not after building
    return caught.value


def test_declared_billion_faces_are_refused_from_the_header():
    assert refused(samples.stl_declaring(10**9), "huge.stl").code == "mesh_too_large"
    assert refused(samples.ply_declaring(10**9)).code == "mesh_too_large"
    assert refused(samples.glb_declaring(10**9)).code == "mesh_too_large"


def test_truncated_files_are_invalid():
    glb = samples.encode(samples.cube(), "glb")
    assert refused(glb[: len(glb) // 2]).code == "invalid_mesh"
    stl = samples.encode(samples.cube(), "stl")
    assert refused(stl[:-10], "cube.stl").code == "invalid_mesh"
    ply = samples.encode(samples.cube(), "ply")
    assert refused(ply[:-20]).code == "invalid_mesh"
    assert refused(samples.glb_declaring(1000)).code == "invalid_mesh"  # accessor past its buffer


@pytest.mark.parametrize(
    "uri", ["file:///etc/passwd", "/etc/passwd", "../../etc/passwd", "http://127.0.0.1:9/buffer.bin", "C:\\x.bin"]
)
def test_gltf_buffers_outside_the_upload_are_never_opened(uri):
    error = refused(samples.gltf_pointing_at(uri))
    assert error.code == "unsafe_mesh" and error.details["uri"] == uri


@pytest.mark.parametrize(
    ("mtl", "texture", "ignored"),
    [
        ("/etc/passwd", "skin.png", "/etc/passwd"),
        ("../../../etc/passwd", "skin.png", "../../../etc/passwd"),
        ("model.mtl", "http://127.0.0.1:9/skin.png", "http://127.0.0.1:9/skin.png"),
        ("model.mtl", "/etc/hostname", "/etc/hostname"),
    ],
)
def test_obj_references_outside_the_zip_are_ignored_and_listed(mtl, texture, ignored):
    found = facts(samples.obj_referencing(mtl, texture), "evil.zip")
    assert found["faces"] == 1
    assert [item["name"] for item in found["ignored_references"]] == [ignored]
    assert found["textures"] == []


def test_zip_bombs_are_bounded():
    bomb = samples.zip_bomb(16)
    assert len(bomb) < 100_000
    assert refused(bomb, limits=MeshLimits(max_unpacked_bytes=4 * MIB)).code == "mesh_too_large"
    assert refused(bomb).code == "unsafe_mesh"  # within the total, but 16 MB from a few KB: the ratio


def test_graph_cycles_and_instance_bombs_are_refused():
    doc = {"asset": {"version": "2.0"}, "nodes": [{"children": [1]}, {"children": [0]}], "scenes": [{"nodes": [0]}]}
    assert refused(samples.glb(doc, b"")).code == "invalid_mesh"
    # 20 levels of nodes, each with two children pointing at the same node: 2**20 instances of one triangle
    nodes = [{"children": [i + 1, i + 1]} for i in range(20)] + [{"mesh": 0}]
    doc = {
        "asset": {"version": "2.0"},
        "buffers": [{"byteLength": 36}],
        "bufferViews": [{"buffer": 0, "byteLength": 36}],
        "accessors": [{"bufferView": 0, "componentType": 5126, "count": 3, "type": "VEC3"}],
        "meshes": [{"primitives": [{"attributes": {"POSITION": 0}}]}],
        "nodes": nodes,
        "scenes": [{"nodes": [0]}],
    }
    assert refused(samples.glb(doc, b"\0" * 36)).code == "mesh_too_large"


def test_texture_bombs_are_refused_from_their_header():
    bomb = samples.glb_textured_with(samples.png_header_only(8000, 8000))  # 64 megapixels declared, none sent
    assert len(bomb) < 2000
    assert refused(bomb).code == "mesh_too_large"
    small = io.BytesIO()
    samples.checker().save(small, "PNG")
    assert facts(samples.glb_textured_with(small.getvalue()))["textures"][0]["width"] == 8


def test_not_a_model():
    assert refused(b"just text, no vertices\n").code == "unsupported_format"
    assert refused(samples.zipped({"readme.txt": b"hi"})).code == "invalid_mesh"
