"""Pydantic models for every API request and response body: the views validate with them, OpenAPI is built from them.

This module holds the shared ones (envelope, predict, models, history, jobs); each feature with bodies of its own has a
module beside it (convert, multipart, meshes, psd, stats). Torch- and Flask-free: the Python client imports it.
"""

from __future__ import annotations

import re
from datetime import datetime
from typing import TYPE_CHECKING, Any, Final, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from ai_service.errors import ERRORS
from ai_service.model_refs import MAX_PART_LENGTH, MODEL_REF_PATTERN
from ai_service.schemas.convert import (  # noqa: F401 (the operations are components of the OpenAPI document)
    ColorKeyOperation,
    ColorspaceOperation,
    ConvertOperation,
    ConvertOptions,
    FlattenAlphaOperation,
    ResizeOperation,
    ToGrayOperation,
)
from ai_service.schemas.meshes import MeshViewOptions
from ai_service.schemas.multipart import multipart_fields
from ai_service.schemas.psd import (  # noqa: F401 (components of the OpenAPI document)
    LayerChoice,
    PsdLayerInfo,
    PsdLayersForm,
    PsdLayersResponse,
)

if TYPE_CHECKING:  # the models import torch; request schemas (and the client) must not
    from ai_service.models.base import ModelOptions

FitPolicy = Literal["stretch", "letterbox", "crop"]
Resample = Literal["nearest", "bilinear", "bicubic", "lanczos", "area", "box"]
OutputFormat = Literal["png", "webp", "jpeg"]
ReturnKind = Literal["json", "image"]
#: `name` or `name@version`, the one definition ModelInfo checks registrations with (ai_service/model_refs.py).
MODEL_NAME_PATTERN: Final = MODEL_REF_PATTERN


class Schema(BaseModel):
    """Base for API bodies: unknown request fields are errors (typos never pass silently)."""

    model_config = ConfigDict(extra="forbid", populate_by_name=True)


class ResponseSchema(BaseModel):
    """Base for response bodies: members a newer server adds never break a client that validates with these."""

    model_config = ConfigDict(extra="allow")


class ValidationIssue(Schema):
    """One problem with one field of the request."""

    loc: list[str | int] = Field(description='Path to the offending field, e.g. ["top_k"] or ["images", 2].')
    msg: str = Field(description="What is wrong with it, in words.")
    type: str = Field(description="pydantic's machine-readable error type, e.g. `greater_than_equal`.")


class ErrorBody(Schema):
    """The `error` object every failure carries."""

    code: Literal[tuple(ERRORS)] = Field(description="Stable, machine-readable error code (see the table in the docs).")  # type: ignore[valid-type]
    message: str = Field(description="Human-readable explanation, written for the person who sent the request.")
    details: list[ValidationIssue] | dict[str, Any] | None = Field(
        None, description="For `validation_error` a list of {loc, msg, type}; otherwise facts such as the limit."
    )


class ErrorResponse(Schema):
    """The envelope of every failed API call, whatever the endpoint and status."""

    error: ErrorBody


class RunOptions(Schema):
    """The model and the per-image options that /predict and bulk jobs share."""

    model: str | None = Field(
        None,
        pattern=MODEL_NAME_PATTERN,
        examples=["digits"],
        description="Model name, optionally `name@version`; default: the configured default model.",
    )
    top_k: int | None = Field(None, ge=1, le=1000, description="Classification: how many labels to return (default 3).")
    fit: FitPolicy | None = Field(
        None,
        description="How the image is fitted to the model's input size: "
        "`stretch` (ignore aspect ratio), `letterbox` (pad), `crop` (center crop). "
        "Models that do their own fitting report what they did in `geometry`.",
    )
    resample: Resample | None = Field(None, description="Resampling filter used when fitting (`box` = `area`).")
    score_threshold: float | None = Field(None, ge=0, le=1, description="Detection: drop boxes scoring below this.")
    background: str | None = Field(
        None,
        max_length=64,
        examples=["#ffffff", "white"],
        description="Color transparent pixels are flattened onto (CSS name or #rrggbb), "
        "for models that need opaque input and for JPEG outputs.",
    )
    output_format: OutputFormat = Field("png", description="Encoding of image outputs (image-to-image, masks).")
    quality: int = Field(90, ge=1, le=100, description="JPEG/WebP quality of image outputs (100 = lossless WebP).")
    cache: Literal["on", "off"] = Field(
        "on",
        description="`on`: an input seen before (same bytes, model version and options) is answered from the result "
        "cache, marked `cached: true`; `off`: always run the model.",
    )

    @field_validator("background")
    @classmethod
    def _known_color(cls, value: str | None) -> str | None:
        """Reject colors the imaging library cannot parse, before any work is done."""
        if value is None:
            return value
        from ai_service.imaging.alpha import parse_color

        try:
            parse_color(value)
        except ValueError:
            raise ValueError("must be a CSS color name or #rgb / #rrggbb, e.g. white or #ffffff") from None
        return value

    def model_options(self, default_top_k: int) -> ModelOptions:
        """The options handed to the model's preprocess/postprocess (imported here: schemas stay torch-free)."""
        from ai_service.models.base import ModelOptions

        return ModelOptions(
            top_k=self.top_k or default_top_k,
            fit=self.fit,
            resample=self.resample,
            background=self.background,
            score_threshold=self.score_threshold,
        )


class DrawingOptions(Schema):
    """The output formats of /predict: RunOptions' raster encodings, or SVG drawings of what the model found."""

    output_format: Literal["png", "webp", "jpeg", "svg"] = Field(
        "png",
        description="Encoding of image outputs (image-to-image, masks). `svg`: detections, segmentation masks "
        "and image outputs (edge maps, traced as line art) drawn as an SVG sized like the input: each result "
        "gets `svg` (a data URL; image outputs and masks stay PNG), and `return=image` answers with the SVG.",
    )
    svg_background: Literal["none", "image"] = Field(
        "none", description="With `output_format=svg`: `image` embeds the input image as the drawing's base layer."
    )


class PredictOptions(MeshViewOptions, LayerChoice, DrawingOptions, RunOptions):
    """Options accepted by POST /api/v1/predict, as multipart form fields or JSON members."""

    return_: ReturnKind = Field(
        "json",
        alias="return",
        description="`json`: image outputs as base64 data URLs inside JSON; `image`: the "
        "response body is the encoded image itself (one input, models with an image output).",
    )


class PredictForm(PredictOptions):
    """multipart/form-data body of POST /api/v1/predict (documentation only: files arrive separately)."""

    model_config = ConfigDict(json_schema_extra=multipart_fields)  # left out, never null (schemas/multipart.py)

    file: list[bytes] = Field(
        min_length=1,
        description="The image(s): repeat the part for a batch; any format "
        "the service reads (PNG, JPEG, WebP, GIF, BMP, TIFF, ICO, PSD, SVG).",
    )


class PredictImageForm(LayerChoice, DrawingOptions, RunOptions):
    """multipart/form-data body of POST /api/v1/predict/image: one image in, the encoded output image out."""

    model_config = ConfigDict(json_schema_extra=multipart_fields)  # left out, never null (schemas/multipart.py)

    file: bytes = Field(description="One image (an image-to-image model's input); any format the service reads.")


class PredictJSON(PredictOptions):
    """application/json body of POST /api/v1/predict: `image` (one) or `images` (a batch), base64 or data: URLs."""

    image: str | None = Field(
        None,
        min_length=1,
        description="One image as base64 or a `data:image/...;base64,` "
        "URL. Remote URLs (http://, https://, ...) are refused, never fetched.",
    )
    images: list[str] | None = Field(
        None,
        min_length=1,
        description="Several images (same encodings as `image`);"
        " one result per image, in order; a bad item gets an error entry.",
    )

    @model_validator(mode="after")
    def _exactly_one_source(self) -> PredictJSON:
        """`image` and `images` are alternatives; one of them is required."""
        if (self.image is None) == (self.images is None):
            raise ValueError("send exactly one of `image` (one image) or `images` (a list of images)")
        return self


class Prediction(Schema):
    """One label of a classification result."""

    label: str
    index: int = Field(ge=0, description="Class index in the model's label list.")
    score: float = Field(ge=0, le=1, description="Softmax probability.")


class Detection(ResponseSchema):
    """One detected object; `box` is [x0, y0, x1, y1] in pixels of the original (upright) image."""

    label: str
    index: int | None = Field(None, ge=0, description="Class index in the model's label list, when the model gives it.")
    score: float = Field(ge=0, le=1)
    box: list[float] = Field(min_length=4, max_length=4)
    keypoints: list[list[float]] | None = Field(None, description="[x, y, ...] in original-image pixels.")
    mask: str | None = Field(None, description="Instance mask as a data URL, sized like the original image.")


class Geometry(ResponseSchema):
    """How the input was fitted to the model; boxes, keypoints and masks are already mapped back to the original."""

    original_size: list[int] = Field(
        min_length=2, max_length=2, description="[width, height] of the upright image, as the user sees it."
    )
    exif_orientation: int = Field(1, ge=1, le=8, description="EXIF orientation tag of the upload (1 = upright).")
    exif_rotated: bool = Field(
        False,
        description="True when the pixels were rotated/flipped upright per EXIF "
        "(for orientations 5-8 the stored width and height are swapped).",
    )
    fit: str | None = Field(None, description="`stretch`, `letterbox`, `crop`, or the model's own policy.")
    resample: str | None = Field(None, description="Resampling filter used when fitting.")
    input_size: list[int] | None = Field(
        None, min_length=2, max_length=2, description="[width, height] fed to the model."
    )
    scale: list[float] | None = Field(
        None, min_length=2, max_length=2, description="[sx, sy]: model-input pixels per original pixel."
    )
    padding: list[int] | None = Field(
        None, min_length=4, max_length=4, description="[left, top, right, bottom] padding added, in model-input pixels."
    )
    crop: list[float] | None = Field(
        None, min_length=4, max_length=4, description="[x0, y0, x1, y1] region of the original image that was used."
    )
    decoded_size: list[int] | None = Field(
        None,
        min_length=2,
        max_length=2,
        description="Present when a large "
        "JPEG was decoded at reduced size for speed; outputs are still "
        "mapped to `original_size`.",
    )


class ResultWarning(ResponseSchema):
    """Something the caller should know about one result, though it succeeded."""

    code: str = Field(
        description="Stable, e.g. `unfamiliar_input`: a classifier is unsure (best score under 0.6, or normalized "
        "entropy over 0.4), so the input is probably unlike what the model was trained on.",
        examples=["unfamiliar_input"],
    )
    message: str = Field(description="For people.")
    details: dict[str, Any] | None = Field(
        None, description="`unfamiliar_input`: top_score, entropy (0–1) and the thresholds min_confidence, max_entropy."
    )


class ItemResult(ResponseSchema):
    """The result for one input image; which output fields appear depends on the model's task."""

    index: int = Field(ge=0, description="Position of the input in the request.")
    filename: str = Field("", description="The multipart filename (empty for JSON inputs).")
    width: int = Field(ge=1, description="Width of the upright source image (as the user sees it).")
    height: int = Field(ge=1, description="Height of the upright source image.")
    mode: str = Field(description="Pixel mode after decoding: L, LA, RGB or RGBA.")
    geometry: Geometry | None = None
    predictions: list[Prediction] | None = Field(None, description="Classification: best labels first.")
    detections: list[Detection] | None = Field(None, description="Detection: objects in original-image pixels.")
    keypoints: list[list[float]] | None = Field(None, description="[x, y, ...] in original-image pixels.")
    image: str | None = Field(None, description="Image-to-image: the output as a data URL (`output_format`).")
    mask: str | None = Field(None, description="Segmentation: the mask as a data URL, sized like the original.")
    svg: str | None = Field(
        None, description="With `output_format=svg`: the drawing (boxes, mask paths or traced lines) as a data URL."
    )
    history_id: str | None = Field(None, description="The history row of this image (GET /api/v1/history/{id}).")
    warnings: list[ResultWarning] | None = Field(
        None, description="Present when the result needs a caveat, e.g. an input unlike the model's training data."
    )
    cached: bool | None = Field(
        None, description="true when this answer came from the result cache (the model did not run for it)."
    )
    views: list[dict[str, Any]] | None = Field(
        None,
        description="A 3D model input: each rendered view's own result (`view`, `azimuth`, `elevation`, then the "
        "fields of an image's result, or its `error`); `predictions` is then their mean (see `aggregate`).",
    )
    mesh: dict[str, Any] | None = Field(
        None, description="A 3D model input: its format, vertices, faces, bounds and watertightness."
    )
    aggregate: dict[str, Any] | None = Field(
        None, description="A 3D model input: how the views' results were combined (`method`) and over how many."
    )


class ItemError(Schema):
    """A failed input inside a batch; the other inputs still have results."""

    index: int = Field(ge=0)
    filename: str = ""
    status: int = Field(ge=400, le=599, description="The HTTP status this error would have on its own.")
    error: ErrorBody
    history_id: str | None = Field(None, description="The history row that recorded this failure.")


class Timing(ResponseSchema):
    """Milliseconds spent per stage; stages that did not run are 0."""

    decode: float = Field(0.0, ge=0)
    preprocess: float = Field(0.0, ge=0)
    queue: float = Field(0.0, ge=0, description="Waiting for a batch slot (dynamic batching).")
    forward: float = Field(0.0, ge=0)
    postprocess: float = Field(0.0, ge=0)
    encode: float = Field(0.0, ge=0, description="Encoding image outputs (PNG/WebP/JPEG).")
    load: float | None = Field(None, ge=0, description="Present when this request loaded the model.")
    cache: float | None = Field(None, ge=0, description="Present when results came from the result cache.")
    total: float = Field(0.0, ge=0)


class PredictResponse(ResponseSchema):
    """The JSON answer of POST /api/v1/predict: always one entry in `results` per input, in order."""

    model: str
    version: str
    task: str
    batch_size: int | None = Field(None, ge=1, description="How many images ran through the network together.")
    cached: bool | None = Field(
        None, description="true when every result came from the result cache (each such result says `cached` too)."
    )
    results: list[ItemResult | ItemError]
    timing_ms: Timing


class ConvertForm(ConvertOptions):
    """multipart/form-data body of POST /api/v1/convert (documentation only: the file arrives separately)."""

    model_config = ConfigDict(json_schema_extra=multipart_fields)  # left out, never null (schemas/multipart.py)

    file: bytes = Field(description="The image (one part).")


class ConvertSource(ResponseSchema):
    """What was uploaded."""

    format: str
    width: int = Field(ge=1)
    height: int = Field(ge=1)


class ConvertResponse(ResponseSchema):
    """POST /api/v1/convert with `response=json`: the output's facts and the image as a data URL."""

    format: str
    content_type: str
    width: int = Field(ge=1)
    height: int = Field(ge=1)
    mode: str
    bytes: int = Field(ge=0)
    filename: str
    source: ConvertSource
    operations: list[dict[str, Any]] = Field(description="The operations as applied, with defaults filled in.")
    data_url: str
    geometry: dict[str, Any] | None = Field(None, description="How the last resize fitted the image.")


ModelState = Literal["registered", "loaded", "offloaded", "failed"]
ModelAction = Literal["load", "unload", "offload"]


class SystemModel(ResponseSchema):
    """A model's lifecycle and memory, as GET /api/v1/system lists it."""

    name: str
    version: str | None = Field(description="null when the registration failed (state failed, see `error`).")
    key: str = Field(description="`name@version`, the model's unique address (`name` when it failed to register).")
    default: bool = Field(description="True for the version that `name` alone addresses (the newest).")
    task: str | None = Field(
        description="classification, image-to-image, detection or segmentation; null when it failed to register."
    )
    source: str = Field(description="Where it came from: builtin, the models file, or a plugin.")
    state: ModelState = Field(description="registered (not loaded), loaded, offloaded (weights in CPU RAM), failed.")
    error: str | None = Field(description="Why loading failed, when state is failed.")
    parameters: int = Field(ge=0, description="Learnable parameters currently held (0 when not loaded).")
    bytes_on_device: int = Field(ge=0)
    bytes_offloaded: int = Field(ge=0)
    last_used: float | None = Field(description="Unix time of the last use.")
    load_seconds: float | None = Field(description="How long the last load took.")
    loads: int = Field(ge=0, description="How many times it was loaded.")
    in_use: int = Field(ge=0, description="Requests using it right now.")


class ModelExample(ResponseSchema):
    """An example input a model offers: an image file to try it with."""

    name: str = Field(description="The file name, unique among the model's examples.", examples=["handwritten-7.png"])
    url: str = Field(description="Where to GET the image (PNG, JPEG, WebP, GIF or BMP; cacheable, with an ETag).")


class PrecisionCheck(ResponseSchema):
    """The load-time accuracy check of reduced precision (docs/performance/tuning.md)."""

    requested: Literal["fp32", "bf16", "fp16", "auto"] = Field(description="What the model or the default asked for.")
    used: Literal["fp32", "bf16", "fp16"] = Field(description="What its forwards run in.")
    metric: Literal["top1_agreement", "max_abs_error"] | None = Field(
        None, description="top1_agreement (classification) or max_abs_error (other tasks); null: nothing measured."
    )
    value: float | None = Field(None, description="The measured agreement (0-1) or error.")
    tolerance: float | None = Field(None, description="The bound: agreement at least, error at most.")
    samples: int = Field(0, ge=0, description="Calibration images compared.")
    reason: str = Field(description="Why `used` is what it is.")


class ModelStatus(SystemModel):
    """A registered model: its metadata, where its weights are, and its lifecycle state."""

    precision: Literal["fp32", "bf16", "fp16"] | None = Field(
        None, description="The precision the loaded model's forwards run in; null when not loaded."
    )
    precision_check: PrecisionCheck | None = Field(
        None, description="Why: the accuracy check reduced precision passed or failed at load; null when not loaded."
    )

    input_size: list[int] | None = Field(
        description="[width, height] the model is fed; null = any size, or a registration that failed."
    )
    input_mode: str | None = Field(description="L, LA, RGB or RGBA; null when the registration failed.")
    labels: list[str]
    mean: list[float]
    std: list[float]
    description: str
    examples: list[ModelExample] = Field(
        default_factory=list,
        description="Example inputs to try the model with (built-ins ship some; a models "
        "file entry or a plugin may declare its own).",
    )
    max_input_pixels: int | None = Field(
        None,
        description="The largest input (pixels) this model accepts, when it is below the server's per-image limit "
        "(an upscaler's output must stay under that limit); null = the server's limit.",
    )


class ModelDetail(ModelStatus):
    """GET /api/v1/models/{ref}: one model plus every version served under its name."""

    versions: list[str] = Field(default_factory=list, description="Versions under this name, oldest first.")


class ModelsResponse(ResponseSchema):
    """GET /api/v1/models."""

    models: list[ModelStatus]


class ModelActionResponse(ResponseSchema):
    """POST /api/v1/models/{ref}/{action}: what was done, how long it took, and the model's state after."""

    action: ModelAction
    seconds: float = Field(ge=0)
    model: ModelStatus


class DeviceInfo(ResponseSchema):
    """A compute device and, on CUDA, its memory counters."""

    device: str = Field(description="e.g. cpu, cuda:0")
    type: str = Field(description="cpu or cuda")
    torch_threads: int | None = Field(
        None,
        ge=1,
        description="CPU: intra-op threads a forward of this worker may use when it runs alone "
        "(AI_SERVICE_TORCH_THREADS when set, else every core of the core budget).",
    )
    torch_threads_busy: int | None = Field(
        None, ge=1, description="CPU: threads per forward when every worker is busy (the worker's fair share)."
    )
    torch_threads_adaptive: bool | None = Field(
        None, description="CPU: true when the core budget grants threads per forward (up to `torch_threads`)."
    )


class HealthResponse(ResponseSchema):
    """GET /api/v1/health."""

    status: str
    version: str
    device: DeviceInfo
    loaded_models: list[str]
    models: list[str]


class MemoryBudget(ResponseSchema):
    """The registry's memory limits and how much of them the loaded models use."""

    budget_bytes: int | None = None
    max_loaded_models: int | None = None
    eviction: str
    loaded_models: int = Field(ge=0)
    models_bytes_on_device: int = Field(ge=0)


class HistoryStatus(ResponseSchema):
    """This worker's history writer: where rows go and how many are written, waiting or dropped."""

    enabled: bool
    backend: str | None = Field(None, description="sqlite, mysql or postgresql.")
    database: str | None = Field(None, description="The database URL without its password.")
    images: str | None = Field(None, description="What the image store keeps: none, outputs or all.")
    written: int = Field(0, ge=0, description="Rows this worker wrote since it started.")
    waiting: int = Field(0, ge=0, description="Rows queued for the database.")
    dropped: int = Field(0, ge=0, description="Rows dropped because the queue was full (database slow or down).")


class SystemResponse(ResponseSchema):
    """GET /api/v1/system: devices, memory counters, process RSS, every model's state and the history writer."""

    version: str
    pid: int
    time: float
    device: DeviceInfo
    devices: list[DeviceInfo]
    memory_allocated: int | None = None
    memory_reserved: int | None = None
    process_rss: int = Field(ge=0)
    memory: MemoryBudget
    models: list[SystemModel]
    history: HistoryStatus | None = None


def validation_details(error: ValidationError) -> list[dict[str, Any]]:
    """pydantic's errors as the API's {loc, msg, type} list (no echo of the input values)."""
    issues = []
    for item in error.errors(include_url=False, include_input=False, include_context=False):
        loc = [part for part in item["loc"] if not (isinstance(part, str) and part.startswith("function-"))]
        issues.append({"loc": loc, "msg": item["msg"].removeprefix("Value error, "), "type": item["type"]})
    return issues


#: A query value pydantic would read as a Unix time (seconds, maybe fractional or with an exponent).
NUMBER = re.compile(r"[-+]?(\d+\.?\d*|\.\d+)([eE][-+]?\d+)?")


class HistoryFilters(Schema):
    """Query parameters of GET /api/v1/history and its export: every filter is optional and they combine (AND)."""

    model: str | None = Field(None, max_length=128, description="Model name (any version unless `version` is set).")
    version: str | None = Field(None, max_length=MAX_PART_LENGTH)
    status: Literal["ok", "error"] | None = None
    source: Literal["api", "web", "job", "cli"] | None = None
    since: datetime | None = Field(None, description="Oldest time included (ISO 8601; UTC when no offset is given).")
    until: datetime | None = Field(None, description="Rows strictly before this time.")
    request_id: str | None = Field(None, max_length=64)
    sha256: str | None = Field(None, pattern="^[0-9a-f]{64}$", description="The input image's sha256 (hex).")
    job_id: str | None = Field(None, max_length=32)

    @field_validator("since", "until", mode="before")
    @classmethod
    def iso_8601_only(cls, value: Any) -> Any:
        """pydantic reads a number as a Unix time; the documented contract (format date-time) is ISO 8601 only."""
        if isinstance(value, int | float) or (isinstance(value, str) and NUMBER.fullmatch(value.strip())):
            raise ValueError("must be an ISO 8601 date-time, e.g. 2026-01-31T12:00:00Z")
        return value


class HistoryPageQuery(HistoryFilters):
    """GET /api/v1/history: the filters plus paging (newest first)."""

    limit: int = Field(50, ge=1, le=500, description="Rows per page.")
    cursor: str | None = Field(None, max_length=200, description="`next_cursor` of the previous page.")


class HistoryExportQuery(HistoryFilters):
    """GET /api/v1/history/export: the filters plus the file format."""

    format: Literal["csv", "jsonl", "parquet"] = "csv"


class HistoryEntry(ResponseSchema):
    """One recorded input image: what it was, what the model said, how long it took, who asked."""

    id: str = Field(description="Time-ordered id; results of POST /api/v1/predict name it as `history_id`.")
    created_at: datetime
    request_id: str
    source: Literal["api", "web", "job", "cli"]
    job_id: str | None = None
    item_index: int = Field(ge=0, description="Position of the image in its request or job.")
    model: str
    version: str
    task: str
    input_sha256: str | None = None
    filename: str
    width: int | None = None
    height: int | None = None
    mode: str | None = None
    status: Literal["ok", "error"]
    error_code: str | None = None
    error_message: str | None = None
    http_status: int = Field(description="200, or the status this image alone would have answered with.")
    result: dict[str, Any] | None = Field(None, description="The result as the API gave it; images as references.")
    top1_label: str | None = None
    top1_score: float | None = None
    timing_ms: dict[str, float] | None = None
    total_ms: float | None = None
    batch_size: int = Field(ge=0)
    client: str = Field(description="`key:<fingerprint>` or `ip:<address>`; never a secret.")
    input_stored: bool = Field(description="GET /api/v1/history/{id}/input returns the image.")
    output_sha256: str | None = Field(None, description="GET /api/v1/history/{id}/output returns the image.")


class HistoryPage(ResponseSchema):
    """A page of history, newest first; pass `next_cursor` back as `cursor` for the next one (null: the end)."""

    items: list[HistoryEntry]
    next_cursor: str | None = None


JobState = Literal["queued", "running", "succeeded", "failed", "cancelled"]
JobFormat = Literal["jsonl", "csv", "parquet"]
#: What `new_id()` makes: a job's id, like a history row's.
JOB_ID_PATTERN: Final = r"^[0-9a-f]{32}$"


class JobOptions(RunOptions):
    """What every image of a bulk job runs with: the model and the per-image options of /predict, plus a label."""

    name: str | None = Field(
        None,
        max_length=255,
        description="A label for lists (default: the archive's file name, `files` or `json`).",
    )


class JobForm(JobOptions):
    """multipart/form-data body of POST /api/v1/jobs: one `archive` part, or `file` parts (documentation only)."""

    model_config = ConfigDict(json_schema_extra=multipart_fields)  # left out, never null (schemas/multipart.py)

    archive: bytes | None = Field(
        None,
        description="A zip or tar archive (.zip, .tar, .tar.gz/.tgz, .tar.bz2, .tar.xz) of images; its member paths "
        "name the results. Refused as a whole (4xx) when it breaks a limit or is unsafe; a member that is not an "
        "image becomes that item's error.",
    )
    file: list[bytes] | None = Field(
        None,
        description="Images, one part each (the part's filename, e.g. a folder's relative path, names the result).",
    )


class JobJSON(JobOptions):
    """application/json body of POST /api/v1/jobs: `images` as base64 or data: URLs, in order."""

    images: list[str] = Field(
        min_length=1,
        description="The images (base64 or `data:image/...;base64,` URLs; remote URLs are refused, never fetched).",
    )
    filenames: list[str] | None = Field(
        None,
        description="A name per image (same length as `images`) for the results; default `0.png`, `1.png`, ...",
    )

    @model_validator(mode="after")
    def _one_name_per_image(self) -> JobJSON:
        """Names, when given, pair up with the images."""
        if self.filenames is not None and len(self.filenames) != len(self.images):
            raise ValueError(f"`filenames` has {len(self.filenames)} names for {len(self.images)} images")
        return self


class JobCreated(ResponseSchema):
    """POST /api/v1/jobs answers 202 with this (and `Location: /api/v1/jobs/{job_id}`) before any image runs."""

    id: str = Field(description="The job's id: GET /api/v1/jobs/{job_id} follows it.")
    status: JobState
    total: int = Field(ge=0, description="Inputs accepted, refused members included (each becomes an error row).")


class JobError(ResponseSchema):
    """Why a job failed as a whole (per-image errors are rows of its results)."""

    code: str
    message: str = ""


class JobStatus(ResponseSchema):
    """A bulk job: its state, its counts, and how fast it goes."""

    id: str
    status: JobState = Field(description="queued, running, succeeded, failed (every item failed) or cancelled.")
    model: str
    version: str = ""
    task: str = ""
    name: str = ""
    source: str = Field("api", description="api, web or cli.")
    executor: str = Field("local", description="local (this service) or celery (`ai-service worker` processes).")
    options: dict[str, Any] = Field(default_factory=dict, description="The per-image options every image runs with.")
    total: int = Field(ge=0)
    done: int = Field(ge=0, description="Images with a result.")
    failed: int = Field(ge=0, description="Images with an error (their rows say why).")
    pending: int = Field(ge=0, description="Images not yet run.")
    created_at: datetime
    started_at: datetime | None = None
    finished_at: datetime | None = None
    throughput_per_s: float | None = Field(None, ge=0, description="Images per second since the job started.")
    eta_s: float | None = Field(
        None, ge=0, description="Seconds to go at that rate (0 when finished; null while unknown or when cancelled)."
    )
    error: JobError | None = None


class JobPage(ResponseSchema):
    """GET /api/v1/jobs: the newest jobs first."""

    items: list[JobStatus]


class JobsQuery(Schema):
    """Query parameters of GET /api/v1/jobs."""

    status: JobState | None = None
    limit: int = Field(50, ge=1, le=500, description="Jobs per answer.")
    before: str | None = Field(
        None, pattern=JOB_ID_PATTERN, description="The id of the last job of the previous answer: the older ones."
    )


class JobResultsQuery(Schema):
    """Query parameters of GET /api/v1/jobs/{job_id}/results."""

    format: JobFormat = Field("jsonl", description="jsonl, csv or parquet.")
