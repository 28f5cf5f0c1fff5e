"""The result cache: a repeated input (retries, page reloads, a job run again, a shared dataset) is answered without
decoding or running the model.

Key: the input's sha256 + the model's fingerprint (name@version, class, the precision it runs in, its weights file's
identity, so a new version or new weights never answer with the old one's results) + every option the model sees
(all fields of ModelOptions and of Upload but its bytes and file name: options added later are covered without
touching this module). Value: the result as the API locates it, JSON with images as lossless PNG (never pickle: a
shared Redis must not be able to run code here). In-process LRU bounded by bytes by default; Redis when
AI_SERVICE_REDIS_URL is set, each entry capped in size and living AI_SERVICE_RESULT_CACHE_TTL_S under one key
prefix. A Redis that fails is skipped for RETRY_AFTER_S: an outage costs one short timeout, then no cache, never an
error.
"""

from __future__ import annotations

import base64
import dataclasses
import hashlib
import inspect
import io
import json
import threading
import time
from collections import OrderedDict
from pathlib import Path
from typing import Any, Protocol

from loguru import logger
from PIL import Image

from ai_service.settings import Settings

#: Bump when the stored form changes: old entries then simply miss.
FORMAT = "1"
#: Redis keys start with this (one namespace to inspect or flush: `redis-cli --scan --pattern 'ai_service:result:*'`).
REDIS_PREFIX = "ai_service:result:"
#: After a Redis error, how long the cache is skipped before Redis is tried again.
RETRY_AFTER_S = 5.0
#: Redis on the network answers in well under a millisecond; past this the answer is computed instead.
REDIS_TIMEOUT_S = 0.1
#: Keys of a located result that belong to the request, not to the answer.
PER_REQUEST = ("index", "filename", "history_id", "cached")
IMAGE_MARK = "$png"


class Cache(Protocol):
    """Bytes by key; a miss or any failure is None, never an exception."""

    #: Larger values are not stored.
    max_entry_bytes: int

    def get(self, key: str) -> bytes | None: ...

    def put(self, key: str, value: bytes) -> None: ...


class MemoryCache:
    """Least recently used entries go first once the total passes `max_bytes`; one lock, no I/O under it."""

    def __init__(self, max_bytes: int, max_entry_bytes: int) -> None:
        self.max_bytes, self.max_entry_bytes = max_bytes, min(max_entry_bytes, max_bytes)
        self._entries: OrderedDict[str, bytes] = OrderedDict()
        self._bytes = 0
        self._lock = threading.Lock()

    def get(self, key: str) -> bytes | None:
        with self._lock:
            value = self._entries.get(key)
            if value is not None:
                self._entries.move_to_end(key)
            return value

    def put(self, key: str, value: bytes) -> None:
        if len(value) > self.max_entry_bytes:
            return
        with self._lock:
            previous = self._entries.pop(key, None)
            self._bytes += len(value) - (len(previous) if previous is not None else 0)
            self._entries[key] = value
            while self._bytes > self.max_bytes:
                _, dropped = self._entries.popitem(last=False)
                self._bytes -= len(dropped)

    @property
    def size_bytes(self) -> int:
        return self._bytes


class RedisCache:
    """Shared by every worker and machine; a failing Redis is skipped for RETRY_AFTER_S, never raised."""

    def __init__(self, url: str, ttl_s: float, max_entry_bytes: int, prefix: str = REDIS_PREFIX) -> None:
        import redis

        self._client = redis.Redis.from_url(
            url, socket_timeout=REDIS_TIMEOUT_S, socket_connect_timeout=REDIS_TIMEOUT_S, retry_on_timeout=False
        )
        self.ttl_ms = int(ttl_s * 1000)
        self.max_entry_bytes = max_entry_bytes
        self.prefix = prefix
        self._down_until = 0.0

    def get(self, key: str) -> bytes | None:
        if time.monotonic() < self._down_until:
            return None
        try:
            return self._client.get(self.prefix + key)
        except Exception as error:  # noqa: BLE001 - redis raises many types; every one means "no cache now"
            self._failed(error)
            return None

    def put(self, key: str, value: bytes) -> None:
        if len(value) > self.max_entry_bytes or time.monotonic() < self._down_until:
            return
        try:
            self._client.set(self.prefix + key, value, px=self.ttl_ms)
        except Exception as error:  # noqa: BLE001
            self._failed(error)

    def _failed(self, error: Exception) -> None:
        if time.monotonic() >= self._down_until:
            logger.warning("result cache: Redis failed ({}); answering without it for {:g} s", error, RETRY_AFTER_S)
        self._down_until = time.monotonic() + RETRY_AFTER_S


def open_cache(settings: Settings) -> Cache | None:
    """The configured cache: None when switched off, Redis with AI_SERVICE_REDIS_URL, else in-process."""
    config = settings.cache
    if not config.enabled:
        return None
    max_entry = int(config.max_entry_kb * 1024)
    if settings.security.redis_url:
        return RedisCache(settings.security.redis_url, config.ttl_s, max_entry)
    return MemoryCache(int(config.memory_mb * 2**20), max_entry)


# ---- keys -------------------------------------------------------------------------------------------------


def fingerprint(model: Any) -> str:
    """What identifies the answers of this loaded model: name@version, class, precision, weights file identity."""
    network = getattr(model, "network", None)
    memo = getattr(model, "_result_cache_fingerprint", None)
    if memo is not None and memo[0] == (id(network), model.precision_in_use):
        return memo[1]
    cls = type(model)
    parts = [FORMAT, model.info.key, f"{cls.__module__}.{cls.__qualname__}", str(model.precision_in_use)]
    for path in (getattr(model, "weights_path", None), _source_file(cls)):
        try:
            stat = Path(path).stat() if path else None
        except OSError:
            stat = None
        parts.append(f"{stat.st_size}:{stat.st_mtime_ns}" if stat else "-")
    spec = getattr(model, "spec", None)
    parts.append(str(getattr(spec, "sha256", "") or ""))
    value = hashlib.sha256("\0".join(parts).encode()).hexdigest()
    model._result_cache_fingerprint = ((id(network), model.precision_in_use), value)
    return value


def _source_file(cls: type) -> str | None:
    try:
        return inspect.getfile(cls)
    except (TypeError, OSError):
        return None


def result_key(model_fingerprint: str, upload: Any, options: Any) -> str:
    """One input's key: the model, every option (all fields of the options and the upload but its bytes and
    name), the input's bytes."""
    fields = [(f.name, getattr(options, f.name)) for f in dataclasses.fields(options)]
    fields += [
        (f.name, getattr(upload, f.name)) for f in dataclasses.fields(upload) if f.name not in ("data", "filename")
    ]
    return hashlib.sha256(f"{model_fingerprint}\0{fields!r}\0{upload.sha256}".encode()).hexdigest()


# ---- values -----------------------------------------------------------------------------------------------


def encode(result: dict[str, Any], max_bytes: int) -> bytes | None:
    """A located result (its per-request keys left out) as bytes, or None when it cannot or should not be kept."""
    if image_bytes(result) > 4 * max_bytes:
        return None  # would compress past the cap anyway: do not spend the encoding
    try:
        data = json.dumps(
            {key: value for key, value in result.items() if key not in PER_REQUEST}, default=_image_to_json
        ).encode()
    except (TypeError, ValueError, OSError):
        return None
    return data if len(data) <= max_bytes else None


def decode(data: bytes) -> dict[str, Any] | None:
    """The stored result back, images as PIL images; None for anything unreadable (then it is recomputed)."""
    try:
        return json.loads(data, object_hook=_json_to_image) if IMAGE_MARK.encode() in data else json.loads(data)
    except (ValueError, OSError):
        return None


def image_bytes(value: Any) -> int:
    """Raw bytes of the PIL images anywhere in a result (one call per container, not per value: every store runs it)."""
    if isinstance(value, Image.Image):
        return value.width * value.height * len(value.getbands())
    total = 0
    for item in value.values() if isinstance(value, dict) else value:
        if isinstance(item, (dict, list, tuple, Image.Image)):
            total += image_bytes(item)
    return total


def _image_to_json(value: Any) -> Any:
    if isinstance(value, Image.Image):
        buffer = io.BytesIO()
        value.save(buffer, "PNG", compress_level=1)  # lossless; PNG refuses modes it cannot hold (TypeError/OSError)
        return {IMAGE_MARK: base64.b64encode(buffer.getvalue()).decode("ascii")}
    raise TypeError(f"{type(value).__name__} is not JSON")


def _json_to_image(value: dict[str, Any]) -> Any:
    if len(value) == 1 and IMAGE_MARK in value:
        image = Image.open(io.BytesIO(base64.b64decode(value[IMAGE_MARK])))
        image.load()
        return image
    return value


# ---- one predict call ---------------------------------------------------------------------------------------


class CallCache:
    """The cache's part in one predict call: the inputs it answered, and storing the answers computed for the rest.

    `model` is the loaded model (None: not loaded yet, so nothing is looked up; its answers are still stored)."""

    def __init__(self, cache: Cache | None, model: Any, uploads: list[Any], options: Any) -> None:
        started = time.perf_counter()
        self._cache, self._options = cache, options
        self._fingerprint = fingerprint(model) if cache is not None and model is not None else None
        self._keys: dict[int, str] = {}
        #: Position among `uploads` → the stored answer (a located result without its per-request keys).
        self.hits: dict[int, dict[str, Any]] = {}
        if self._fingerprint is not None:
            for position, upload in enumerate(uploads):
                key = self._keys[position] = result_key(self._fingerprint, upload, options)
                data = cache.get(key)
                found = decode(data) if data is not None else None
                if found is not None:
                    self.hits[position] = found
        #: Milliseconds spent looking up (the `cache` stage of timing_ms).
        self.ms = round((time.perf_counter() - started) * 1000.0, 3)

    def answer(self, position: int, upload: Any, index: int) -> dict[str, Any]:
        """The stored answer of input `position`, as the `index`-th result of this request."""
        return {**self.hits[position], "filename": upload.filename, "index": index, "cached": True}

    def keep(self, model: Any, position: int, upload: Any, result: dict[str, Any]) -> None:
        """Store a computed, located result, unless the model changed (reloaded, new weights) while it ran."""
        if self._cache is None or "error" in result or model is None:
            return
        now = fingerprint(model)
        if self._fingerprint is not None and now != self._fingerprint:
            return
        key = self._keys.get(position) or result_key(now, upload, self._options)
        data = encode(result, self._cache.max_entry_bytes)
        if data is not None:
            self._cache.put(key, data)
