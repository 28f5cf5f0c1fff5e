"""Settings: defaults < config file (AI_SERVICE_CONFIG) < AI_SERVICE_* environment < overrides."""
from __future__ import annotations

import json
import os
import tomllib
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any, Mapping

PACKAGE_DIR = Path(__file__).resolve().parent
PROJECT_ROOT = PACKAGE_DIR.parent
ENV_PREFIX = "AI_SERVICE_"
TRUE_WORDS = {"1", "true", "yes", "on"}
FALSE_WORDS = {"0", "false", "no", "off", ""}


@dataclass(frozen=True)
class Settings:
    """Every knob of the service; paths are derived from `home`, never from the working directory."""

    home: Path = PROJECT_ROOT
    device: str = "auto"
    gpus: str = ""
    require_cuda: bool = False
    torch_threads: int = 0
    log_level: str = "INFO"
    log_json: bool = False
    log_to_file: bool = True
    log_rotation: str = "20 MB"
    log_retention: str = "14 days"
    log_compression: str = "gz"
    max_upload_mb: float = 16.0
    max_pixels: int = 40_000_000
    max_files: int = 16
    default_model: str = "digits"
    default_top_k: int = 3
    preload: tuple[str, ...] = ()
    models_file: str = ""
    load_plugins: bool = True
    warmup: bool = False
    admin_token: str = field(default="", repr=False)
    gpu_memory_budget: str = ""
    max_loaded_models: int = 0
    eviction: str = "auto"
    host: str = "127.0.0.1"
    port: int = 8000
    bind: str = "127.0.0.1:8000"
    workers: int = 1
    threads: int = 12
    timeout: int = 60
    keepalive: int = 5
    max_batch_size: int = 0
    max_batch_delay_ms: float = 5.0
    max_queue: int = 64
    request_timeout_s: float = 30.0
    amp: str = ""
    compile: bool = False
    compile_mode: str = "default"
    channels_last: bool = True
    fuse_batchnorm: bool = True
    api_keys: tuple[str, ...] = field(default=(), repr=False)
    rate_limit: str = ""
    redis_url: str = field(default="", repr=False)
    trusted_proxies: int = 0
    cors_origins: tuple[str, ...] = ()
    csp: str = ""
    body_timeout: float = 30.0
    metrics: bool = True
    max_requests: int = 50000
    max_requests_jitter: int = 5000
    extra: Mapping[str, Any] = field(default_factory=dict)

    @property
    def models_dir(self) -> Path:
        return self.home / "models"

    @property
    def data_dir(self) -> Path:
        return self.home / "var"

    @property
    def logs_dir(self) -> Path:
        return self.home / "logs"

    @property
    def max_content_length(self) -> int:
        return int(self.max_upload_mb * 1024 * 1024)

    def ensure_dirs(self) -> None:
        """Create the derived folders on demand (first start, fresh AI_SERVICE_HOME)."""
        for folder in (self.models_dir, self.data_dir, self.logs_dir):
            folder.mkdir(parents=True, exist_ok=True)


FIELD_TYPES = {f.name: f.type for f in fields(Settings) if f.name != "extra"}


class ConfigError(ValueError):
    """A setting that cannot be parsed; raised at startup so a typo never runs silently."""


def _coerce(name: str, value: Any) -> Any:
    """Turn a string (env) or file value into the field's type."""
    kind = FIELD_TYPES[name]
    try:
        if kind == "bool":
            if isinstance(value, bool):
                return value
            word = str(value).strip().lower()
            if word in TRUE_WORDS:
                return True
            if word in FALSE_WORDS:
                return False
            raise ValueError(f"expected a boolean, got {value!r}")
        if kind == "int":
            return int(value)
        if kind == "float":
            return float(value)
        if kind == "Path":
            return Path(value).expanduser().resolve()
        if kind == "tuple[str, ...]":
            items = value.split(",") if isinstance(value, str) else list(value)
            return tuple(item.strip() for item in items if str(item).strip())
        return str(value)
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"setting {name}: {exc}") from None


def _read_file(path: Path) -> dict[str, Any]:
    """Read a TOML or JSON config file; keys are setting names (case-insensitive)."""
    text = path.read_text(encoding="utf-8")
    data = json.loads(text) if path.suffix == ".json" else tomllib.loads(text)
    section = data.get("ai_service", data)
    return {str(k).lower(): v for k, v in section.items()}


def load_settings(overrides: Mapping[str, Any] | None = None, environ: Mapping[str, str] | None = None) -> Settings:
    """Build Settings from defaults, the optional file, the environment and explicit overrides."""
    environ = os.environ if environ is None else environ
    values: dict[str, Any] = {}
    extra: dict[str, Any] = {}
    config_file = environ.get(ENV_PREFIX + "CONFIG")
    if config_file:
        path = Path(config_file).expanduser()
        if not path.is_file():
            raise ConfigError(f"AI_SERVICE_CONFIG points to {path}, which is not a file")
        values.update(_read_file(path))
    for key, value in environ.items():
        if key.startswith(ENV_PREFIX) and key != ENV_PREFIX + "CONFIG":
            values[key[len(ENV_PREFIX):].lower()] = value
    for key, value in (overrides or {}).items():
        values[key.lower()] = value
    known = {}
    for key, value in values.items():
        if key in FIELD_TYPES:
            known[key] = _coerce(key, value)
        else:
            extra[key] = value
    settings = Settings(**known, extra=extra)
    if settings.default_top_k < 1 or settings.max_pixels < 1 or settings.max_upload_mb <= 0:
        raise ConfigError("default_top_k, max_pixels and max_upload_mb must be positive")
    return settings
