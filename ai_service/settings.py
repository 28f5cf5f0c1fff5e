"""Settings: defaults < config file (AI_SERVICE_CONFIG) < AI_SERVICE_* environment < overrides.

One pydantic model in sections (`settings.engine.max_batch_size`), validated once at start-up. Every
setting also has a flat name, the one of the README's table: `AI_SERVICE_LOG_LEVEL` in the environment,
`log_level` in the config file and in `create_app(overrides)`, `settings.log.level` in Python. A field's
flat name is its alias where it has one, else its own name.
"""

from __future__ import annotations

import json
import os
import tomllib
from collections.abc import Mapping
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, BaseModel, BeforeValidator, ConfigDict, Field, ValidationError
from pydantic_settings import BaseSettings, PydanticBaseSettingsSource, SettingsConfigDict

PACKAGE_DIR = Path(__file__).resolve().parent
PROJECT_ROOT = PACKAGE_DIR.parent
#: templates/ and static/: copied into the package when a wheel is built (setup.py), beside it in a checkout.
ASSETS_DIR = PACKAGE_DIR if (PACKAGE_DIR / "templates").is_dir() else PROJECT_ROOT
ENV_PREFIX = "AI_SERVICE_"
TRUE_WORDS = {"1", "true", "yes", "on"}
FALSE_WORDS = {"0", "false", "no", "off", ""}
#: Flat names that no longer exist, with what replaced them: a deployment that sets one is told at start-up.
REMOVED = {"host": "bind (AI_SERVICE_BIND=host:port)", "port": "bind (AI_SERVICE_BIND=host:port)"}
#: Old flat names that still work, with the setting that took their place (the new name wins when both are set).
RENAMED = {"amp": "precision"}


def default_home() -> Path:
    """A checkout serves from the checkout; an installed package from Flask's instance folder, never site-packages.

    Flask's convention (`app.instance_path`): `<prefix>/var/ai_service-instance` for a package installed under a
    prefix (a virtual environment or the system), where `<prefix>` holds its lib/ and bin/.
    """
    from flask.sansio.scaffold import find_package

    prefix, _ = find_package(PACKAGE_DIR.name)
    return PROJECT_ROOT if prefix is None else Path(prefix).resolve() / "var" / f"{PACKAGE_DIR.name}-instance"


class ConfigError(ValueError):
    """A setting that cannot be parsed; raised at startup so a typo never runs silently."""


def _flag(value: Any) -> bool:
    """The environment's words for booleans, exactly (pydantic's own list differs: t/f, y/n, no empty string)."""
    if isinstance(value, bool):
        return value
    word = str(value).strip().lower()
    if word in TRUE_WORDS or word in FALSE_WORDS:
        return word in TRUE_WORDS
    raise ValueError("expected a boolean (1/true/yes/on or 0/false/no/off)")


def _comma_list(value: Any) -> tuple[str, ...]:
    """ "a, b" from the environment, or a list from a config file; blanks dropped."""
    items = value.split(",") if isinstance(value, str) else list(value)
    return tuple(str(item).strip() for item in items if str(item).strip())


def _word(value: Any) -> Any:
    """Choices are matched case- and space-insensitively (" BF16" is bf16)."""
    return value.strip().lower() if isinstance(value, str) else value


Flag = Annotated[bool, BeforeValidator(_flag)]
CommaList = Annotated[tuple[str, ...], BeforeValidator(_comma_list)]
ResolvedPath = Annotated[Path, AfterValidator(lambda path: path.expanduser().resolve())]


class Section(BaseModel):
    """A group of settings; fields are set by name or by their flat name (alias)."""

    model_config = ConfigDict(
        frozen=True, extra="forbid", validate_by_name=True, validate_by_alias=True, coerce_numbers_to_str=True
    )


class ServerSettings(Section):
    """gunicorn: where to listen, how many processes and threads, when to recycle them."""

    #: host:port gunicorn binds; `python app.py` listens there too.
    bind: str = "127.0.0.1:8000"
    #: Worker processes; 0 (default) = the best count for the machine: one per core (affinity and cgroup quota),
    #: on GPU boxes too, at least one per GPU in use (listed in AI_SERVICE_GPUS, else visible); a number overrides it.
    workers: int = Field(0, ge=0)
    #: Request threads per worker (the most requests one worker can batch together).
    threads: int = 12
    #: Worker timeout and graceful-shutdown time (s), raised to outlast the request deadline.
    timeout: int = 60
    #: Seconds an idle client connection stays open.
    keepalive: int = 5
    #: Requests after which a worker is replaced (0 = never), plus a random 0..jitter.
    max_requests: int = 50000
    #: A random 0..this added to max_requests per worker, so workers never restart together.
    max_requests_jitter: int = 5000
    #: gunicorn's control socket (for `gunicornc`), one per home at var/gunicorn.ctl; off = none.
    control_socket: Flag = True


class ComputeSettings(Section):
    """Which device the models run on."""

    #: auto, cpu, cuda or cuda:N.
    device: str = "auto"
    #: CUDA_VISIBLE_DEVICES before CUDA initializes, e.g. "0,1".
    gpus: str = ""
    #: Refuse to start without CUDA instead of falling back to the CPU.
    require_cuda: Flag = False


class LogSettings(Section):
    """loguru's console and file sinks."""

    #: loguru level for the console and the file.
    level: str = Field("INFO", alias="log_level")
    #: JSON lines on the console and in the file.
    as_json: Flag = Field(False, alias="log_json")
    #: Write logs/ai_service.log under the home.
    to_file: Flag = Field(True, alias="log_to_file")
    #: When the file is rotated: a size or a time (loguru's rotation).
    rotation: str = Field("20 MB", alias="log_rotation")
    #: How long rotated files are kept.
    retention: str = Field("14 days", alias="log_retention")
    #: Compression of rotated files ("" = none).
    compression: str = Field("gz", alias="log_compression")


class LimitSettings(Section):
    """What one request may send: body size, pixels, files, and how slowly."""

    #: Request body limit, MiB (multipart; for JSON, the decoded images) → 413 payload_too_large.
    max_upload_mb: float = Field(16.0, gt=0)
    #: Decoded pixels per image (decompression bombs).
    max_pixels: int = Field(40_000_000, ge=1)
    #: Files per request → 413 too_many_files.
    max_files: int = 16
    #: Seconds a request body may take to arrive under gunicorn.
    body_timeout: float = 30.0

    @property
    def max_content_length(self) -> int:
        """The body limit in bytes, as Flask wants it."""
        return int(self.max_upload_mb * 1024 * 1024)


EVICTION_MODES = ("auto", "offload", "unload")
PRECISIONS = ("fp32", "bf16", "fp16", "auto")


def _precision_word(value: Any) -> Any:
    """AI_SERVICE_AMP's "" (autocast off) is fp32; choices are matched like every other word."""
    value = _word(value)
    return "fp32" if value == "" else value


class ModelSettings(Section):
    """Which models exist, which one answers by default, and what stays loaded."""

    #: The model a request that names none gets.
    default_model: str = "digits"
    #: Labels a classification returns when the request asks for no top_k.
    default_top_k: int = Field(3, ge=1)
    #: Models loaded at start-up (otherwise on first use).
    preload: CommaList = ()
    #: The declarative models file, relative to home ("" = models.yaml/.yml/.toml in the home).
    models_file: str = ""
    #: Import plugins from models/*.py under the home and the `ai_service.models` entry points.
    load_plugins: Flag = True
    #: Run a dummy batch when a model loads.
    warmup: Flag = False
    #: Bytes ("6GiB") or a share ("80%") of the device that loaded models may use ("" = no limit).
    gpu_memory_budget: str = ""
    #: Most models on the device at once (0 = no limit).
    max_loaded_models: int = Field(0, ge=0)
    #: What leaves the device past a limit: weights to CPU RAM, gone, or auto (offload on GPUs, unload on CPU).
    eviction: Annotated[Literal[EVICTION_MODES], BeforeValidator(_word)] = "auto"  # type: ignore[valid-type]


class EngineSettings(Section):
    """Batching, back-pressure and the forward's hot-path switches, shared by every model of a process."""

    #: Images per forward unless the model sets its own (0 = the engine's measured default per device).
    max_batch_size: int = Field(0, ge=0)
    #: Longest wait for more images unless the model sets its own.
    max_batch_delay_ms: float = Field(5.0, ge=0)
    #: Images queued or decoding per model and worker before 503 overloaded.
    max_queue: int = Field(64, ge=1)
    #: Deadline of one predict request (decode, queue, forward).
    request_timeout_s: float = Field(30.0, gt=0)
    #: Intra-op threads per CPU forward; 0 = adaptive (the core budget shares the cores); negative means 0.
    torch_threads: Annotated[int, AfterValidator(lambda threads: max(0, threads))] = 0
    #: Numerics of every model's forward unless its models-file entry or class says otherwise: fp32, bf16, fp16, or
    #: auto (bf16 where the device computes it natively, else fp32). Reduced precision is served only when the
    #: model's answers pass the accuracy check at load (docs/performance/tuning.md); AI_SERVICE_AMP is the old name.
    precision: Annotated[Literal[PRECISIONS], BeforeValidator(_precision_word)] = "fp32"  # type: ignore[valid-type]
    #: torch.compile each model for power-of-two batch buckets, compiled at preload (else by its first batch).
    compile: Flag = False
    #: torch.compile's mode.
    compile_mode: Annotated[
        Literal["default", "reduce-overhead", "max-autotune", "max-autotune-no-cudagraphs"], BeforeValidator(_word)
    ] = "default"
    #: torch.compile backend ("eager" in tests: no compiler needed).
    compile_backend: str = "inductor"
    #: Run convolutional networks in channels_last memory format.
    channels_last: Flag = True
    #: Fold BatchNorm into the preceding convolution at load.
    fuse_batchnorm: Flag = True
    #: Seconds an idle model's inference thread waits before it exits (a new request starts another).
    idle_exit_s: float = Field(10.0, gt=0)


class CacheSettings(Section):
    """Answers to inputs seen before (same bytes, model version, options): in-process LRU, or Redis when
    AI_SERVICE_REDIS_URL is set (shared by every worker and machine)."""

    #: Answer a repeated input from the cache (a request can still send cache=off).
    enabled: Flag = Field(True, alias="result_cache")
    #: Bytes of answers the in-process cache keeps per worker, MiB (least recently used go first).
    memory_mb: float = Field(64.0, gt=0, alias="result_cache_mb")
    #: Largest single answer cached, KiB (bigger ones, e.g. upscaled images, are recomputed).
    max_entry_kb: float = Field(1024.0, gt=0, alias="result_cache_max_entry_kb")
    #: Seconds an answer lives in Redis (Redis only: its memory is bounded by entry size × traffic × TTL).
    ttl_s: float = Field(3600.0, gt=0, alias="result_cache_ttl_s")


class SecuritySettings(Section):
    """Who may call, how often, from where; the secrets stay out of repr()."""

    #: Bearer token of the model lifecycle calls ("" = those answer 403).
    admin_token: str = Field("", repr=False)
    #: Keys accepted on POST/PUT/PATCH/DELETE (none = open).
    api_keys: CommaList = Field((), repr=False)
    #: e.g. "120/minute;5000/hour", per API key or client address (checked by flask-limiter at start-up).
    rate_limit: str = ""
    #: Rate-limit counters shared by every worker (default: in memory, per worker).
    redis_url: str = Field("", repr=False)
    #: X-Forwarded-* hops to trust.
    trusted_proxies: int = 0
    #: Origins whose browser code may call /api/, e.g. https://app.example.com; * = any (none = CORS off).
    cors_origins: CommaList = ()
    #: Replaces the Content-Security-Policy of HTML pages.
    csp: str = ""


class DatabaseSettings(Section):
    """The SQL database every stored feature shares (history now): embedded SQLite unless a URL says otherwise."""

    #: SQLAlchemy URL: mysql+pymysql://user:pw@host/db, postgresql+psycopg://user@host/db ("" = SQLite in var/).
    url: str = Field("", alias="database_url", repr=False)
    #: Upgrade the schema at start-up (under a lock, so workers starting together upgrade once); off = only
    #: `ai-service db upgrade` does, and start-up refuses an out-of-date schema.
    migrate: Flag = Field(True, alias="database_migrate")
    #: Connections each process keeps open (the history writer uses one; reads use the rest).
    pool_size: int = Field(5, ge=1, alias="database_pool_size")


HISTORY_IMAGES = ("none", "outputs", "all")


class HistorySettings(Section):
    """One row per predicted image, written off the hot path by a background writer."""

    #: Record predictions (off = no database is opened at all).
    enabled: Flag = Field(True, alias="history")
    #: Which images to keep in the content-addressed store under var/blobs: none, outputs, or all (inputs too).
    images: Annotated[Literal[HISTORY_IMAGES], BeforeValidator(_word)] = Field(  # type: ignore[valid-type]
        "none", alias="history_images"
    )
    #: Delete rows (and images no row refers to) older than this many days; 0 = keep forever.
    days: float = Field(0.0, ge=0, alias="history_days")
    #: Rows waiting for the database per process; beyond it rows are dropped and counted, never blocking.
    queue_size: int = Field(10_000, ge=1, alias="history_queue_size")
    #: Most rows per INSERT transaction.
    batch_size: int = Field(500, ge=1, alias="history_batch_size")
    #: Longest a row waits for more rows to join its transaction: a writer's cost per row halves from 50- to
    #: 300-row batches (per-transaction work, GIL hand-offs), so a second beats a fifth of a second here.
    flush_ms: float = Field(1000.0, ge=0, alias="history_flush_ms")


class JobsSettings(Section):
    """Bulk jobs: archives or folders of images run in chunks, by this process's local executor or by Celery workers."""

    #: Accept jobs (off = the /api/v1/jobs endpoints answer 503 jobs_disabled).
    enabled: Flag = Field(True, alias="jobs")
    #: redis://host:6379/0 or amqp://user:pw@host:5672/vhost: the web process only stores and enqueues, and
    #: `ai-service worker` processes run the chunks; "" = the local executor inside the service.
    broker_url: str = Field("", alias="broker_url", repr=False)
    #: Where job inputs and image outputs live for every machine to read: "" = the database, or a directory
    #: (a shared mount when workers run on other machines).
    store: str = Field("", alias="jobs_store")
    #: Images per chunk: the unit a worker takes, retries and acknowledges.
    chunk_size: int = Field(64, ge=1, le=4096, alias="jobs_chunk_size")
    #: Chunks the local executor runs at once in each web process (0 = none: this process never runs jobs).
    local_workers: int = Field(1, ge=0, alias="jobs_local_workers")
    #: Most images in one job.
    max_items: int = Field(100_000, ge=1, alias="jobs_max_items")
    #: Largest upload (archive or files) of one job, MiB.
    max_upload_mb: float = Field(2048.0, gt=0, alias="jobs_max_upload_mb")
    #: Most bytes an archive may unpack to, MiB (zip bombs).
    max_unpacked_mb: float = Field(8192.0, gt=0, alias="jobs_max_unpacked_mb")
    #: Largest single member of an archive, MiB.
    max_member_mb: float = Field(64.0, gt=0, alias="jobs_max_member_mb")
    #: Highest compression ratio of an archive member (uncompressed / compressed) before it counts as a bomb.
    max_ratio: float = Field(200.0, gt=1, alias="jobs_max_ratio")
    #: Seconds a Redis broker waits before it hands an unacknowledged chunk (its worker died) to another worker.
    visibility_timeout_s: float = Field(900.0, gt=0, alias="jobs_visibility_timeout_s")
    #: A running chunk whose worker has not reported for this many seconds is taken over (local executor).
    stale_after_s: float = Field(60.0, gt=0, alias="jobs_stale_after_s")


class MeshSettings(Section):
    """3D models (GLB/glTF, OBJ, STL, PLY): what one upload may declare, checked before any mesh is built."""

    #: Largest model upload (a file or a zip of one), MiB; the mesh endpoints accept bodies up to this.
    max_upload_mb: float = Field(64.0, gt=0, alias="mesh_max_upload_mb")
    #: Most vertices and triangles once the scene is flattened (every instance counted).
    max_vertices: int = Field(2_000_000, ge=1, alias="mesh_max_vertices")
    #: Most triangles once the scene is flattened (every instance counted).
    max_faces: int = Field(2_000_000, ge=1, alias="mesh_max_faces")
    #: Most glTF nodes and placed mesh instances.
    max_nodes: int = Field(10_000, ge=1, alias="mesh_max_nodes")
    #: Most bytes a model's zip may unpack to, MiB, and the highest unpacked/packed ratio of a member (zip bombs).
    max_unpacked_mb: float = Field(256.0, gt=0, alias="mesh_max_unpacked_mb")
    #: Highest unpacked/packed ratio of a member of a model's zip (zip bombs).
    max_ratio: float = Field(100.0, gt=1, alias="mesh_max_ratio")
    #: Most pixels of one texture image (read from its header before it is decoded).
    max_texture_pixels: int = Field(4096 * 4096, ge=1, alias="mesh_max_texture_pixels")
    #: Most views one render or predict call may ask for, and their largest side in pixels.
    max_views: int = Field(24, ge=1, le=360, alias="mesh_max_views")
    #: Largest side of a rendered view, pixels.
    max_render_size: int = Field(1024, ge=16, le=4096, alias="mesh_max_render_size")


class Settings(BaseSettings):
    """Every knob of the service; paths are derived from `home`, never from the working directory."""

    model_config = SettingsConfigDict(frozen=True, extra="forbid", coerce_numbers_to_str=True)

    #: Base path: models/, var/ (data) and logs/ live under it; the checkout, or Flask's instance folder once installed.
    home: ResolvedPath = Field(default_factory=default_home)
    #: Serve Prometheus metrics at /metrics.
    metrics: Flag = True
    server: ServerSettings = ServerSettings()
    compute: ComputeSettings = ComputeSettings()
    log: LogSettings = LogSettings()
    limits: LimitSettings = LimitSettings()
    models: ModelSettings = ModelSettings()
    engine: EngineSettings = EngineSettings()
    cache: CacheSettings = CacheSettings()
    security: SecuritySettings = SecuritySettings()
    database: DatabaseSettings = DatabaseSettings()
    history: HistorySettings = HistorySettings()
    jobs: JobsSettings = JobsSettings()
    meshes: MeshSettings = MeshSettings()
    #: Keys no setting has (lower case): kept, not refused, as before the sections.
    extra: dict[str, Any] = {}

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
    def database_url(self) -> str:
        """The configured URL, or the embedded SQLite file under var/ (so `make run` needs no server)."""
        return self.database.url or f"sqlite:///{self.data_dir / 'ai_service.db'}"

    @property
    def blobs_dir(self) -> Path:
        """Stored history images, by sha256."""
        return self.data_dir / "blobs"

    def ensure_dirs(self) -> None:
        """Create the derived folders on demand (first start, fresh AI_SERVICE_HOME)."""
        for folder in (self.models_dir, self.data_dir, self.logs_dir):
            folder.mkdir(parents=True, exist_ok=True)

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: Any,
        env_settings: Any,
        dotenv_settings: Any,
        file_secret_settings: Any,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        """Highest first: overrides, the environment, the config file (all by flat name); no .env or secrets files."""
        return init_settings, EnvironmentSource(settings_cls), ConfigFileSource(settings_cls)


def _flat_names() -> dict[str, tuple[str | None, str]]:
    """flat name → (section or None for a top-level field, field name)."""
    names: dict[str, tuple[str | None, str]] = {}
    for name, info in Settings.model_fields.items():
        if isinstance(info.annotation, type) and issubclass(info.annotation, Section):
            for field, field_info in info.annotation.model_fields.items():
                names[field_info.alias or field] = (name, field)
        elif name != "extra":
            names[name] = (None, name)
    return names


#: Every setting by its flat name (the environment's, the config file's and create_app's overrides').
FLAT_NAMES: dict[str, tuple[str | None, str]] = _flat_names()
SECTIONS = {section for section, _ in FLAT_NAMES.values() if section}
_SECRETS = {"admin_token", "api_keys", "redis_url", "database_url", "broker_url"}


def nest(values: Mapping[str, Any]) -> dict[str, Any]:
    """Flat (`log_level`) and sectioned (`{"log": {"level": ...}}`) keys → the model's shape; others → extra."""
    nested: dict[str, Any] = {}
    extra: dict[str, Any] = {}
    for key, value in values.items():
        key = str(key).lower()
        if key in RENAMED:
            if RENAMED[key] in {str(name).lower() for name in values}:
                continue
            key = RENAMED[key]
        if key in SECTIONS and isinstance(value, Mapping):
            for inner, inner_value in value.items():
                inner = RENAMED.get(str(inner).lower(), str(inner).lower())
                section, field = FLAT_NAMES.get(inner, (key, inner))
                nested.setdefault(key, {})[field if section == key else inner] = inner_value
        elif key in FLAT_NAMES:
            section, field = FLAT_NAMES[key]
            (nested.setdefault(section, {}) if section else nested)[field] = value
        elif key in REMOVED:
            raise ConfigError(f"setting {key} was replaced by {REMOVED[key]}")
        else:
            extra[key] = value
    if extra:
        nested["extra"] = extra
    return nested


class EnvironmentSource(PydanticBaseSettingsSource):
    """AI_SERVICE_<FLAT NAME> variables (AI_SERVICE_CONFIG names the file and is no setting)."""

    def get_field_value(self, field: Any, field_name: str) -> tuple[Any, str, bool]:
        return None, field_name, False  # everything is read at once by __call__

    def __call__(self) -> dict[str, Any]:
        return nest(
            {
                key[len(ENV_PREFIX) :]: value
                for key, value in os.environ.items()
                if key.startswith(ENV_PREFIX) and key != ENV_PREFIX + "CONFIG"
            }
        )


class ConfigFileSource(PydanticBaseSettingsSource):
    """The TOML or JSON file named by AI_SERVICE_CONFIG: flat keys and/or section tables, optionally under
    an [ai_service] table."""

    def get_field_value(self, field: Any, field_name: str) -> tuple[Any, str, bool]:
        return None, field_name, False

    def __call__(self) -> dict[str, Any]:
        config_file = os.environ.get(ENV_PREFIX + "CONFIG")
        if not config_file:
            return {}
        path = Path(config_file).expanduser()
        if not path.is_file():
            raise ConfigError(f"AI_SERVICE_CONFIG points to {path}, which is not a file")
        text = path.read_text(encoding="utf-8")
        try:
            data = json.loads(text) if path.suffix == ".json" else tomllib.loads(text)
        except ValueError as exc:
            raise ConfigError(f"AI_SERVICE_CONFIG {path}: {exc}") from None
        table = data.get("ai_service", data) if isinstance(data, dict) else None
        if not isinstance(table, dict):
            raise ConfigError(f"AI_SERVICE_CONFIG {path}: expected a table of settings")
        return nest(table)


def _describe(error: Mapping[str, Any]) -> str:
    """One validation error as `setting <flat name> (AI_SERVICE_<NAME>): <why>, got <value>`."""
    loc = [str(part) for part in error["loc"]]
    if error["type"] == "extra_forbidden" and len(loc) == 2:
        return f"setting {loc[0]}.{loc[1]}: [{loc[0]}] has no such setting"
    if loc and loc[0] in SECTIONS and len(loc) > 1:
        section_fields = {field: flat for flat, (section, field) in FLAT_NAMES.items() if section == loc[0]}
        name = section_fields.get(loc[1], loc[1])
    else:
        name = loc[0] if loc else "?"
    message = str(error["msg"]).removeprefix("Value error, ")
    shown = "" if name in _SECRETS else f", got {error['input']!r}"
    return f"setting {name} ({ENV_PREFIX}{name.upper()}): {message}{shown}"


def load_settings(overrides: Mapping[str, Any] | None = None) -> Settings:
    """Build Settings from defaults, the optional file, the environment and explicit (flat) overrides."""
    try:
        return Settings(**nest(overrides or {}))
    except ValidationError as exc:
        raise ConfigError("; ".join(_describe(error) for error in exc.errors())) from None
