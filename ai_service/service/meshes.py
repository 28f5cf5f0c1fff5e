"""3D models for every caller: inspect, render and convert, and a mesh input of /predict turned into its views.

The JSON API, the upload page and /predict all come here, so a model gives the same facts and pixels everywhere.
ai_service.meshes.load and .render need trimesh (the `3d` extra) and are imported on first use: without it a mesh
is a 503 `unavailable` naming the extra, and everything else still runs.
"""

from __future__ import annotations

import posixpath
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from ai_service.errors import ServiceError
from ai_service.imaging.encode import to_data_url
from ai_service.imaging.io import encode_image
from ai_service.meshes.limits import MIB, MeshLimits
from ai_service.meshes.sniff import sniff_mesh
from ai_service.schemas.meshes import MeshRenderOptions, view_list
from ai_service.service.upload import Upload
from ai_service.settings import MeshSettings

if TYPE_CHECKING:  # trimesh is an extra: imported when a mesh arrives
    from ai_service.meshes.export import Exported
    from ai_service.meshes.load import Model
    from ai_service.meshes.render import Rendered, View


def mesh_limits(settings: MeshSettings) -> MeshLimits:
    """The settings as the bounds ai_service.meshes checks."""
    return MeshLimits(
        max_bytes=int(settings.max_upload_mb * MIB),
        max_vertices=settings.max_vertices,
        max_faces=settings.max_faces,
        max_nodes=settings.max_nodes,
        max_unpacked_bytes=int(settings.max_unpacked_mb * MIB),
        max_ratio=settings.max_ratio,
        max_texture_pixels=settings.max_texture_pixels,
    )


def load(data: bytes, filename: str, settings: MeshSettings) -> Model:
    """The model in the upload, within the limits; raises ServiceError (invalid_mesh, mesh_too_large, ...)."""
    if not data:
        raise ServiceError("empty_file", "The uploaded file is empty.")
    try:
        from ai_service.meshes.load import load_model
    except ModuleNotFoundError as error:
        raise ServiceError(
            "unavailable", f"3D models need {error.name}, which is not installed: pip install 'ai-service[3d]'."
        ) from None
    return load_model(data, mesh_limits(settings), filename)


def inspect(data: bytes, filename: str, settings: MeshSettings) -> dict[str, Any]:
    """The model's facts (MeshFacts)."""
    from ai_service.meshes.facts import inspect_model

    return inspect_model(load(data, filename, settings))


def views_of(views: int | str, elevation: float = 20.0) -> list[View]:
    """A validated `views` value as cameras: a turntable or named views."""
    from ai_service.meshes.render import named_views, turntable

    chosen = view_list(views)
    return turntable(chosen, elevation) if isinstance(chosen, int) else named_views(chosen)


def view_count(views: int | str) -> int:
    """How many views a validated `views` value asks for."""
    chosen = view_list(views)
    return chosen if isinstance(chosen, int) else len(chosen)


def png_bytes(image: Any) -> bytes:
    """A rendered view as a PNG file."""
    return encode_image(image, "png")


def check_views(count: int, size: int, settings: MeshSettings) -> None:
    """Refuse more views or larger ones than the server renders (a 422 naming the setting)."""
    issues = []
    if count > settings.max_views:
        issues.append({"loc": ["views"], "msg": f"at most {settings.max_views} views", "type": "less_than_equal"})
    if size > settings.max_render_size:
        limit = settings.max_render_size
        issues.append({"loc": ["size"], "msg": f"at most {limit} pixels", "type": "less_than_equal"})
    if issues:
        where = ", ".join(f"{issue['loc'][0]}: {issue['msg']}" for issue in issues)
        raise ServiceError("validation_error", f"Invalid request: {where} (AI_SERVICE_MESH_MAX_*).", issues)


@dataclass
class RenderOutcome:
    """Rendered views of one model, with its facts and how long it took."""

    rendered: list[Rendered]
    facts: dict[str, Any]
    timing_ms: dict[str, float] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        """The JSON answer (MeshRenderResponse): every view as a PNG data URL."""
        return {
            "scale": round(self.rendered[0].scale, 6),
            "views": [
                {
                    "name": item.view.name,
                    "azimuth": item.view.azimuth,
                    "elevation": round(item.view.elevation, 3),
                    "width": item.image.width,
                    "height": item.image.height,
                    "coverage": round(item.coverage, 6),
                    "image": to_data_url(item.image, "png"),
                }
                for item in self.rendered
            ],
            "mesh": self.facts,
            "timing_ms": self.timing_ms,
        }


def render(data: bytes, filename: str, options: MeshRenderOptions, settings: MeshSettings) -> RenderOutcome:
    """Load the model and render the views the options name."""
    from ai_service.meshes.facts import inspect_model
    from ai_service.meshes.render import parse_color, render_views

    views = views_of(options.views, options.elevation)
    check_views(len(views), options.size, settings)
    started = time.perf_counter()
    model = load(data, filename, settings)
    loaded = time.perf_counter()
    rendered = render_views(model, views, options.size, parse_color(options.background), options.up, options.antialias)
    done = time.perf_counter()
    timing = {"load": round((loaded - started) * 1000, 3), "render": round((done - loaded) * 1000, 3)}
    return RenderOutcome(rendered, inspect_model(model), timing)


def convert(data: bytes, filename: str, fmt: str, settings: MeshSettings) -> Exported:
    """The model written as `fmt` (glb, obj as a zip with its MTL and textures, stl, ply)."""
    from ai_service.meshes.export import export_model

    return export_model(load(data, filename, settings), fmt)


# --- meshes as /predict inputs ---------------------------------------------------------------------------


@dataclass(frozen=True)
class MeshViews:
    """How /predict renders a mesh input before the model sees it."""

    #: A turntable count or comma-separated view names (validated by ai_service.schemas.meshes).
    views: int | str = 8
    #: Side of each view in pixels.
    size: int = 256


@dataclass
class Span:
    """Where one mesh input's views sit among the expanded inputs."""

    start: int
    views: list[View]
    facts: dict[str, Any]


@dataclass
class MeshPlan:
    """The inputs with each mesh replaced by its rendered views, and how to fold the views' results back."""

    uploads: list[Upload | ServiceError]
    #: Per original input: its span of views, or the index of the input itself.
    spans: list[Span | int]
    #: Per original input: its file name (a mesh that failed to load keeps it in its error entry).
    filenames: list[str] = field(default_factory=list)

    def fold(self, results: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
        """One result per original input: a mesh's views, with classification scores averaged into `predictions`."""
        folded = []
        for index, span in enumerate(self.spans):
            if isinstance(span, int):
                folded.append({**results[span], "index": index})
                if not folded[-1].get("filename") and self.filenames[index]:
                    folded[-1]["filename"] = self.filenames[index]
                continue
            views = [view_result(results[span.start + i], view) for i, view in enumerate(span.views)]
            folded.append(mesh_result(index, span, views))
        return folded


def expand_meshes(uploads: Sequence[Upload | ServiceError], spec: MeshViews, settings: MeshSettings) -> MeshPlan:
    """Replace each mesh upload by PNG renderings of its views (a bad mesh becomes its error entry)."""
    plan = MeshPlan([], [])
    for item in uploads:
        plan.filenames.append(item.filename if isinstance(item, Upload) else "")
        if not isinstance(item, Upload) or sniff_mesh(item.data, item.filename) is None:
            plan.spans.append(len(plan.uploads))
            plan.uploads.append(item)
            continue
        try:
            outcome = render(item.data, item.filename, MeshRenderOptions(views=spec.views, size=spec.size), settings)
        except ServiceError as error:
            plan.spans.append(len(plan.uploads))
            plan.uploads.append(error)
            continue
        stem = item.filename or "model"
        plan.spans.append(Span(len(plan.uploads), [r.view for r in outcome.rendered], outcome.facts))
        for rendered in outcome.rendered:
            plan.uploads.append(Upload(png_bytes(rendered.image), f"{stem}#{rendered.view.name}"))
    return plan


def view_result(result: dict[str, Any], view: View) -> dict[str, Any]:
    """A view's result, named by its view instead of its place among the expanded inputs."""
    entry = {key: value for key, value in result.items() if key not in ("index", "filename")}
    return {"view": view.name, "azimuth": view.azimuth, "elevation": round(view.elevation, 3), **entry}


def mesh_result(index: int, span: Span, views: list[dict[str, Any]]) -> dict[str, Any]:
    """A mesh input's entry: its facts, each view's result, and the mean of the views' classification scores."""
    good = [view for view in views if "error" not in view]
    facts = span.facts
    name = facts["name"] if not facts.get("zipped") else posixpath.basename(facts["name"])
    if not good:
        return {"index": index, "filename": name, **{k: views[0][k] for k in ("error", "status")}, "views": views}
    entry: dict[str, Any] = {
        "index": index,
        "filename": name,
        "width": good[0]["width"],
        "height": good[0]["height"],
        "mode": good[0].get("mode", "RGBA"),
        "mesh": {key: facts[key] for key in ("format", "vertices", "faces", "bounds", "watertight")},
        "views": views,
        "aggregate": {"method": "mean over views", "views": len(good)},
    }
    if all("predictions" in view for view in good):
        entry["predictions"] = mean_predictions(good)
    return entry


def mean_predictions(views: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Each label's score averaged over the views (0 where a view's top_k left it out), best first, top_k kept."""
    totals: dict[str, dict[str, Any]] = {}
    for view in views:
        for prediction in view["predictions"]:
            slot = totals.setdefault(prediction["label"], {**prediction, "score": 0.0})
            slot["score"] += prediction["score"] / len(views)
    ranked = sorted(totals.values(), key=lambda item: -item["score"])
    return [{**item, "score": round(item["score"], 6)} for item in ranked[: len(views[0]["predictions"])]]
