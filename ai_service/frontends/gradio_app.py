"""A demo tab per served model, generated from the registry, as a Gradio Blocks app (`ai-service gradio`, the
`gradio` extra).

Each tab's inputs and outputs follow the model's task: a label with confidences (classification), an image
(image-to-image), the upload annotated with boxes (detection) or masks (segmentation); its examples are the model's
own (ModelInfo.examples). Every call goes to service.predict in-process, as the upload page's do (caller `web`, the
browser's address as client): the same decoding, limits, options, batching and history rows as the HTTP API, with
no HTTP hop in between. Nothing is fetched at run time: no analytics, no version check, never a share link.
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

os.environ["GRADIO_ANALYTICS_ENABLED"] = "False"  # read when gradio is imported: no usage reports or version check
os.environ.setdefault("HF_HUB_OFFLINE", "1")  # huggingface_hub (a gradio dependency) never downloads either

import gradio as gr  # noqa: E402
import numpy as np  # noqa: E402
from PIL import Image  # noqa: E402
from pydantic import ValidationError  # noqa: E402

from ai_service.errors import ServiceError  # noqa: E402
from ai_service.imaging.io import decode_image  # noqa: E402
from ai_service.keys import accepted_keys, key_matches  # noqa: E402
from ai_service.observability.logging import new_request_id  # noqa: E402
from ai_service.schemas import PredictOptions  # noqa: E402
from ai_service.service.predict import predict  # noqa: E402
from ai_service.service.runtime import Runtime  # noqa: E402
from ai_service.service.upload import Caller, Upload  # noqa: E402
from ai_service.settings import SecuritySettings  # noqa: E402

#: System fonts only: the default theme's web fonts are bundled, a Google font would be fetched by every browser.
THEME = gr.themes.Default(font=["system-ui", "sans-serif"], font_mono=["ui-monospace", "monospace"])
#: The most labels a classification tab lets the user ask for.
MAX_TOP_K = 20
#: Uploads and outputs Gradio keeps in its folder are deleted once this old (s), checked as often.
CACHE_SECONDS = 3600


def endpoint_name(key: str) -> str:
    """The API name of a model's tab for gradio_client: digits@1.0 -> predict_digits_1_0."""
    return "predict_" + re.sub(r"[^0-9A-Za-z]+", "_", key).strip("_").lower()


def run_model(runtime: Runtime, key: str, path: str | None, fields: dict[str, Any], request: Any) -> dict[str, Any]:
    """One upload through service.predict; the result of the image, or gr.Error with the API's code and message."""
    if not path:
        raise gr.Error("Choose an image first (or click an example).")
    try:
        options = PredictOptions.model_validate({name: value for name, value in fields.items() if value is not None})
        data = Path(path).read_bytes()  # the file as uploaded: the service decodes it, not Gradio
        limit = runtime.settings.limits.max_content_length
        if len(data) > limit:
            raise ServiceError(
                "payload_too_large",
                f"The image is {len(data) / 2**20:.2f} MB; the limit is {runtime.settings.limits.max_upload_mb:g} MB.",
                {"limit": limit, "setting": "AI_SERVICE_MAX_UPLOAD_MB"},
            )
        host = getattr(getattr(request, "client", None), "host", "") or ""
        caller = Caller("web", new_request_id(), f"ip:{host}" if host else "")
        model_options = options.model_options(runtime.settings.models.default_top_k)
        outcome = predict(runtime, key, [Upload(data, Path(path).name)], model_options, caller)
    except ServiceError as error:
        raise gr.Error(f"{error.message} ({error.code})") from None
    except ValidationError as error:
        raise gr.Error(f"Invalid option: {error.errors()[0]['msg']}") from None
    result = outcome.results[0]
    if "error" in result:
        raise gr.Error(f"{result['error']['message']} ({result['error']['code']})")
    return {"result": result, "data": data, "summary": summary(outcome.as_dict(), result)}


def summary(outcome: dict[str, Any], result: dict[str, Any]) -> dict[str, Any]:
    """The JSON panel: what the API would answer for this image, images left out."""
    kept = {key: value for key, value in result.items() if not isinstance(value, Image.Image)}
    return {key: outcome[key] for key in ("model", "version", "task", "timing_ms")} | {"result": kept}


def labels(result: dict[str, Any]) -> dict[str, float]:
    """Classification predictions as gr.Label's confidences."""
    return {item["label"]: float(item["score"]) for item in result.get("predictions", [])}


def source(data: bytes, runtime: Runtime) -> Image.Image:
    """The upload upright at full size: the picture boxes and masks are drawn on (both are in its pixels)."""
    return decode_image(data, max_pixels=runtime.settings.limits.max_pixels)


def boxes(result: dict[str, Any]) -> list[tuple[tuple[int, int, int, int], str]]:
    """Detections as gr.AnnotatedImage's (box, label) pairs."""
    found = []
    for item in result.get("detections", []):
        x0, y0, x1, y1 = (round(value) for value in item["box"])
        found.append(((x0, y0, x1, y1), f"{item['label']} {float(item.get('score', 0)):.2f}"))
    return found


def masks(result: dict[str, Any], size: tuple[int, int], names: tuple[str, ...]) -> list[tuple[np.ndarray, str]]:
    """A segmentation result as gr.AnnotatedImage's (mask, label) pairs: one per class its legend lists (matched by
    color), or its one mask (L, or RGBA's alpha) under the first label that is not background."""
    mask: Image.Image = result["mask"]
    if mask.size != size:
        mask = mask.resize(size, Image.Resampling.NEAREST)
    pixels = np.asarray(mask.convert("RGBA"))
    visible = pixels[..., 3] > 0 if mask.mode in ("RGBA", "LA", "PA") else pixels[..., 0] > 127
    found = []
    for item in result.get("classes", []):
        color = item.get("color")
        if color:
            rgb = np.array([int(color[index : index + 2], 16) for index in (1, 3, 5)], dtype=np.uint8)
            selected = visible & np.all(pixels[..., :3] == rgb, axis=-1)
            if selected.any():
                found.append((selected.astype(np.float32), str(item["label"])))
    if found:
        return found
    named = [name for name in names if name.lower() not in ("background", "__background__", "bg", "_background_")]
    label = (result.get("classes") or [{}])[0].get("label") or (named[0] if named else "mask")
    return [(visible.astype(np.float32), str(label))]


def model_tab(runtime: Runtime, key: str) -> None:
    """The inputs, outputs, examples and event of one model, inside the current gr.Tab."""
    info = runtime.resolve(key).info
    if info.description:
        gr.Markdown(info.description)
    with gr.Row():
        with gr.Column():
            # image_mode=None with a file path: Gradio hands over the file as uploaded, never re-encoded.
            image = gr.Image(type="filepath", image_mode=None, label="Image", sources=["upload", "clipboard"])
            option_inputs, names = options_for(runtime, info.task, info.labels)
            button = gr.Button("Predict", variant="primary")
        with gr.Column():
            output = output_for(info.task)
            details = gr.JSON(label="Response")
    handler = handler_for(runtime, key, info.task, info.labels, names)
    button.click(handler, [image, *option_inputs], [output, details], api_name=endpoint_name(key))
    if info.examples:
        gr.Examples([[str(path)] for path in info.examples], inputs=[image], label="Examples")


def options_for(runtime: Runtime, task: str, names: tuple[str, ...]) -> tuple[list[Any], list[str]]:
    """The per-request options a task's tab offers (as PredictOptions names them)."""
    if task == "classification":
        most = max(1, min(MAX_TOP_K, len(names) or MAX_TOP_K))
        default = min(runtime.settings.models.default_top_k, most)
        return [gr.Slider(1, most, value=default, step=1, label="Labels to show (top_k)")], ["top_k"]
    if task == "detection":
        threshold = gr.Number(None, minimum=0, maximum=1, step=0.05, label="Score threshold (empty: the model's own)")
        return [threshold], ["score_threshold"]
    return [], []


def output_for(task: str) -> Any:
    """The component a task's result is shown in."""
    if task == "classification":
        return gr.Label(label="Prediction", show_label=True)
    if task == "image-to-image":
        return gr.Image(type="pil", label="Output", format="png")
    return gr.AnnotatedImage(label="Detections" if task == "detection" else "Segmentation", format="png")


def handler_for(
    runtime: Runtime, key: str, task: str, names: tuple[str, ...], option_names: list[str]
) -> Callable[..., tuple[Any, dict[str, Any]]]:
    """The event function of one tab: the upload and its options in, the task's output and the JSON panel out."""

    def respond(path: str | None, fields: dict[str, Any], request: gr.Request) -> tuple[Any, dict[str, Any]]:
        if fields.get("top_k") is not None:
            fields["top_k"] = int(fields["top_k"])
        ran = run_model(runtime, key, path, {"model": key, **fields}, request)
        result = ran["result"]
        if task == "classification":
            return labels(result), ran["summary"]
        if task == "image-to-image":
            return result["image"], ran["summary"]
        picture = source(ran["data"], runtime)
        if task == "detection":
            return (picture, boxes(result)), ran["summary"]
        return (picture, masks(result, picture.size, names)), ran["summary"]

    # Gradio hands gr.Request to a positional parameter annotated with it: one signature per number of options.
    if option_names:

        def handle(path: str | None, option: Any, request: gr.Request) -> tuple[Any, dict[str, Any]]:
            return respond(path, {option_names[0]: option}, request)

    else:

        def handle(path: str | None, request: gr.Request) -> tuple[Any, dict[str, Any]]:  # type: ignore[misc]
            return respond(path, {}, request)

    return handle


def build(runtime: Runtime, models: list[str] | None = None) -> gr.Blocks:
    """The Blocks app: a tab per model (every registered one, or those `models` names), the default first."""
    keys = [runtime.resolve(ref).info.key for ref in models] if models else runtime.registry.keys()
    default = runtime.resolve(None).info.key if not models else None
    keys = sorted(dict.fromkeys(keys), key=lambda key: key != default)
    names = [key.partition("@")[0] for key in keys]
    with gr.Blocks(
        title="ai_service models", analytics_enabled=False, delete_cache=(CACHE_SECONDS, CACHE_SECONDS)
    ) as app:
        gr.Markdown("# Models\nEvery prediction here goes through the service and is kept in its history.")
        for key, name in zip(keys, names):
            with gr.Tab(name if names.count(name) == 1 else key):
                model_tab(runtime, key)
    return app


def example_folders(runtime: Runtime) -> list[str]:
    """Where the models' example files live: Gradio serves files from these folders only (and its own cache)."""
    folders = {str(path.parent) for key in runtime.registry.keys() for path in runtime.resolve(key).info.examples}
    return sorted(folders)


def login(security: SecuritySettings) -> Callable[[str, str], bool] | None:
    """With AI_SERVICE_API_KEYS set, the app asks for a login: any user name, and an API key as the password."""
    keys = accepted_keys(security)
    if not keys:
        return None
    return lambda _user, password: key_matches(password, keys)


def launch(runtime: Runtime, host: str, port: int, models: list[str] | None = None, *, block: bool = True) -> gr.Blocks:
    """Serve the app on host:port (loopback by default); `block=False` returns once it listens (tests)."""
    app = build(runtime, models)
    app.queue(default_concurrency_limit=runtime.settings.server.threads)
    app.launch(
        server_name=host,
        server_port=port,
        share=False,  # a share link would download frpc and tunnel through gradio.live
        inbrowser=False,
        prevent_thread_lock=not block,
        show_error=True,
        auth=login(runtime.settings.security),
        auth_message="This service requires an API key: any user name, and the key as the password.",
        quiet=not block,
        max_file_size=runtime.settings.limits.max_content_length,
        allowed_paths=example_folders(runtime),
        ssr_mode=False,
        mcp_server=False,
        pwa=False,
        enable_monitoring=False,
        theme=THEME,
    )
    return app
