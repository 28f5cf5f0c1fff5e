"""A small typed client for the JSON API: predict on paths, bytes or PIL images; failures raise ServiceError."""

from __future__ import annotations

import base64
import io
import json
import os
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Sequence
from pathlib import Path
from typing import IO, Any

from PIL import Image

from ai_service.schemas import HealthResponse, ModelStatus, PredictResponse

ImageInput = str | os.PathLike | bytes | bytearray | memoryview | Image.Image | IO[bytes]
RETRY_STATUSES = (429, 503)


class ServiceError(Exception):
    """The service answered with an error envelope (or could not be reached: status 0)."""

    def __init__(self, status: int, code: str, message: str, details: Any = None, request_id: str | None = None):
        super().__init__(f"{status} {code}: {message}")
        self.status, self.code, self.message, self.details, self.request_id = status, code, message, details, request_id


class Client:
    """One service at `base_url`; thread-safe (no shared connection state)."""

    def __init__(
        self,
        base_url: str = "http://127.0.0.1:8000",
        *,
        api_key: str | None = None,
        timeout: float = 60.0,
        retries: int = 2,
        max_retry_wait: float = 10.0,
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self.api_key, self.timeout = api_key, timeout
        self.retries, self.max_retry_wait = retries, max_retry_wait

    def predict(self, image: ImageInput, *, model: str | None = None, **options: Any) -> PredictResponse:
        """Run a model on one image; a bad image raises ServiceError (e.g. code `unsupported_format`)."""
        return PredictResponse.model_validate(self._predict([image], model, options))

    def predict_many(
        self, images: Sequence[ImageInput], *, model: str | None = None, **options: Any
    ) -> PredictResponse:
        """Run a model on several images in one request; a bad image gets an ItemError entry, the rest still run."""
        if len(images) == 1:
            return PredictResponse.model_validate(
                self._request(
                    "POST",
                    "/api/v1/predict",
                    json_body={
                        "images": [base64.b64encode(image_bytes(images[0])[0]).decode("ascii")],
                        **self._options(model, options),
                    },
                )
            )
        return PredictResponse.model_validate(self._predict(images, model, options))

    def predict_image(self, image: ImageInput, *, model: str, output_format: str = "png", **options: Any) -> bytes:
        """Run an image-to-image (or segmentation) model and get the encoded output image back."""
        return self._predict([image], model, {**options, "output_format": output_format, "return": "image"})

    def models(self) -> list[ModelStatus]:
        return [ModelStatus.model_validate(item) for item in self._request("GET", "/api/v1/models")["models"]]

    def health(self) -> HealthResponse:
        return HealthResponse.model_validate(self._request("GET", "/api/v1/health"))

    def openapi(self) -> dict[str, Any]:
        return self._request("GET", "/api/v1/openapi.json")

    def _predict(self, images: Sequence[ImageInput], model: str | None, options: dict[str, Any]) -> Any:
        files = [image_bytes(image) for image in images]
        return self._request("POST", "/api/v1/predict", fields=self._options(model, options), files=files)

    @staticmethod
    def _options(model: str | None, options: dict[str, Any]) -> dict[str, Any]:
        """Form/JSON options without the unset ones (`return_` is accepted for the `return` keyword)."""
        if "return_" in options:
            options = {**options, "return": options.pop("return_")}
        chosen = {"model": model, **options}
        return {key: value for key, value in chosen.items() if value is not None}

    def _request(
        self,
        method: str,
        path: str,
        *,
        fields: dict[str, Any] | None = None,
        files: list[tuple[bytes, str]] | None = None,
        json_body: dict[str, Any] | None = None,
    ) -> Any:
        """Send, retrying 429/503 after Retry-After (bounded); JSON bodies are parsed, images returned as bytes."""
        headers = {"Accept": "application/json, image/*"}
        if self.api_key:
            headers["Authorization"] = f"Bearer {self.api_key}"
        data = None
        if files is not None:
            data, headers["Content-Type"] = encode_multipart(fields or {}, files)
        elif json_body is not None:
            data, headers["Content-Type"] = json.dumps(json_body).encode(), "application/json"
        for attempt in range(self.retries + 1):
            request = urllib.request.Request(self.base_url + path, data=data, headers=headers, method=method)
            try:
                with urllib.request.urlopen(request, timeout=self.timeout) as response:
                    body = response.read()
                    kind = response.headers.get_content_type()
                    return json.loads(body) if kind == "application/json" else body
            except urllib.error.HTTPError as failure:
                wait = retry_after(failure)
                if failure.code in RETRY_STATUSES and wait is not None and attempt < self.retries:
                    time.sleep(min(wait, self.max_retry_wait))
                    continue
                raise error_from(failure) from None
            except (urllib.error.URLError, OSError) as failure:
                reason = getattr(failure, "reason", failure)
                raise ServiceError(0, "unreachable", f"Could not reach {self.base_url}: {reason}") from None
        raise AssertionError("unreachable: the loop returns or raises")


def image_bytes(image: ImageInput) -> tuple[bytes, str]:
    """(bytes, filename) for a path, raw bytes, an open binary file or a PIL image (sent as lossless PNG)."""
    if isinstance(image, Image.Image):
        buffer = io.BytesIO()
        image.save(buffer, "PNG")
        return buffer.getvalue(), "image.png"
    if isinstance(image, (bytes, bytearray, memoryview)):
        return bytes(image), "image"
    if isinstance(image, (str, os.PathLike)):
        path = Path(image)
        return path.read_bytes(), path.name
    return image.read(), Path(getattr(image, "name", "image") or "image").name


def encode_multipart(fields: dict[str, Any], files: list[tuple[bytes, str]]) -> tuple[bytes, str]:
    """A multipart/form-data body: text fields, then one `file` part per image."""
    boundary = uuid.uuid4().hex
    parts: list[bytes] = []
    for name, value in fields.items():
        parts.append(f'--{boundary}\r\nContent-Disposition: form-data; name="{name}"\r\n\r\n{value}\r\n'.encode())
    for data, filename in files:
        safe = filename.replace('"', "_").replace("\r", "_").replace("\n", "_") or "image"
        parts.append(
            f'--{boundary}\r\nContent-Disposition: form-data; name="file"; filename="{safe}"\r\n'
            "Content-Type: application/octet-stream\r\n\r\n".encode()
            + data
            + b"\r\n"
        )
    parts.append(f"--{boundary}--\r\n".encode())
    return b"".join(parts), f"multipart/form-data; boundary={boundary}"


def retry_after(failure: urllib.error.HTTPError) -> float | None:
    """Seconds from a Retry-After header (delta form), if the server sent one."""
    value = failure.headers.get("Retry-After") if failure.headers else None
    try:
        return max(0.0, float(value)) if value is not None else None
    except ValueError:
        return None


def error_from(failure: urllib.error.HTTPError) -> ServiceError:
    """The error envelope of a failed response as a ServiceError (a non-JSON body still gives a useful one)."""
    request_id = failure.headers.get("X-Request-ID") if failure.headers else None
    try:
        error = json.loads(failure.read())["error"]
        return ServiceError(failure.code, error["code"], error["message"], error.get("details"), request_id)
    except (ValueError, KeyError, TypeError):
        return ServiceError(failure.code, "http_error", f"HTTP {failure.code} {failure.reason}", None, request_id)


def decode_data_url(url: str) -> bytes:
    """The bytes inside a base64 data: URL (image outputs in JSON results)."""
    header, _, payload = url.partition(",")
    if not header.startswith("data:") or ";base64" not in header:
        raise ValueError("not a base64 data: URL")
    return base64.b64decode(payload)
