import os
from pathlib import Path

import pytest

from ai_service.settings import (
    ENV_PREFIX,
    FLAT_NAMES,
    PROJECT_ROOT,
    ConfigError,
    EngineSettings,
    Settings,
    load_settings,
)

#: Every flat name the README's table documented before the sections: each keeps working unchanged.
DOCUMENTED = (
    "home device gpus require_cuda torch_threads log_level log_json log_to_file log_rotation log_retention "
    "log_compression max_upload_mb max_pixels max_files default_model default_top_k preload models_file "
    "load_plugins warmup admin_token gpu_memory_budget max_loaded_models eviction bind workers threads timeout "
    "keepalive max_batch_size max_batch_delay_ms max_queue request_timeout_s precision compile compile_mode "
    "channels_last fuse_batchnorm api_keys rate_limit redis_url trusted_proxies cors_origins csp body_timeout "
    "metrics max_requests max_requests_jitter control_socket history database_url database_migrate database_pool_size "
    "history_images "
    "history_days history_queue_size history_batch_size history_flush_ms jobs broker_url jobs_store jobs_chunk_size "
    "jobs_local_workers jobs_max_items jobs_max_upload_mb jobs_max_unpacked_mb jobs_max_member_mb jobs_max_ratio "
    "jobs_visibility_timeout_s jobs_stale_after_s result_cache result_cache_mb result_cache_max_entry_kb "
    "result_cache_ttl_s "
    "mesh_max_upload_mb mesh_max_vertices mesh_max_faces mesh_max_nodes mesh_max_unpacked_mb mesh_max_ratio "
    "mesh_max_views mesh_max_render_size mesh_max_texture_pixels"
).split()


#: The defaults alone (no environment, no file): `model_construct` runs no settings source.
DEFAULTS = Settings.model_construct()


@pytest.fixture(autouse=True)
def clean_environment(monkeypatch):
    """Only what a test sets: an AI_SERVICE_* variable of the shell running the tests must not leak in."""
    for key in [key for key in os.environ if key.startswith(ENV_PREFIX)]:
        monkeypatch.delenv(key)


def value_at(settings: Settings, flat: str):
    section, field = FLAT_NAMES[flat]
    return getattr(getattr(settings, section) if section else settings, field)


def sample(flat: str, default):
    """A valid value other than the default, as an environment string, and what it parses to."""
    special = {
        "precision": ("BF16", "bf16"),
        "compile_mode": ("max-autotune", "max-autotune"),
        "eviction": ("offload", "offload"),
        "history_images": ("ALL", "all"),
        "home": ("/tmp/elsewhere", Path("/tmp/elsewhere").resolve()),
    }
    if flat in special:
        return special[flat]
    if isinstance(default, bool):
        return ("off", False) if default else ("on", True)
    if isinstance(default, int):
        return str(default + 2), default + 2
    if isinstance(default, float):
        return str(default + 1.5), default + 1.5
    if isinstance(default, tuple):
        return " a, b ,,", ("a", "b")
    return "x-" + flat, "x-" + flat


def test_defaults_are_sane_and_home_is_the_project_root():
    settings = load_settings()
    assert settings.home == PROJECT_ROOT == Path(__file__).resolve().parent.parent
    assert settings.compute.device == "auto" and settings.models.default_model == "digits"
    assert settings.models_dir == PROJECT_ROOT / "models"
    assert settings.data_dir == PROJECT_ROOT / "var" and settings.logs_dir == PROJECT_ROOT / "logs"


def test_sections_group_the_settings():
    settings = load_settings({"log_level": "DEBUG", "max_batch_size": 16, "bind": "0.0.0.0:9000"})
    assert settings.log.level == "DEBUG" and settings.engine.max_batch_size == 16
    assert settings.server.bind == "0.0.0.0:9000" and settings.limits.max_content_length == 16 * 1024 * 1024
    assert isinstance(settings.engine, EngineSettings) and not hasattr(settings, "log_level")


def test_every_documented_name_is_a_setting():
    assert set(DOCUMENTED) <= set(FLAT_NAMES)
    assert set(FLAT_NAMES) - set(DOCUMENTED) == {"compile_backend", "idle_exit_s"}  # engine tuning, not in the README


def test_the_manual_table_lists_every_setting():
    """docs/settings.md's table is generated from the model (docs/hooks/pages.py); this checks the generator."""
    import importlib.util

    spec = importlib.util.spec_from_file_location("docs_hooks_pages", PROJECT_ROOT / "docs" / "hooks" / "pages.py")
    hooks = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(hooks)
    table = hooks.settings_markdown()
    assert [flat for flat in FLAT_NAMES if f"`{ENV_PREFIX}{flat.upper()}`" not in table] == []


@pytest.mark.parametrize("flat", sorted(FLAT_NAMES))
def test_every_flat_name_still_maps_from_the_environment(flat, monkeypatch):
    text, expected = sample(flat, value_at(DEFAULTS, flat))
    monkeypatch.setenv(ENV_PREFIX + flat.upper(), text)
    assert value_at(load_settings(), flat) == expected


def test_home_does_not_depend_on_the_working_directory(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert load_settings().home == PROJECT_ROOT


def test_environment_is_parsed_to_types(tmp_path, monkeypatch):
    env = {
        "AI_SERVICE_HOME": str(tmp_path),
        "AI_SERVICE_REQUIRE_CUDA": "yes",
        "AI_SERVICE_MAX_PIXELS": "1000",
        "AI_SERVICE_MAX_UPLOAD_MB": "2.5",
        "AI_SERVICE_PRELOAD": "digits, other",
        "AI_SERVICE_LOG_JSON": "0",
        "AI_SERVICE_COMPILE": "",
        "AI_SERVICE_UNKNOWN_THING": "kept",
    }
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    settings = load_settings()
    assert settings.home == tmp_path.resolve()
    assert settings.compute.require_cuda is True and settings.log.as_json is False
    assert settings.engine.compile is False  # the empty string is "off", as before
    assert settings.limits.max_pixels == 1000 and settings.limits.max_content_length == int(2.5 * 1024 * 1024)
    assert settings.models.preload == ("digits", "other")
    assert settings.extra == {"unknown_thing": "kept"}


def test_precedence_file_then_env_then_overrides(tmp_path, monkeypatch):
    config = tmp_path / "service.toml"
    config.write_text('device = "cpu"\ndefault_top_k = 5\nthreads = 8\n')
    monkeypatch.setenv("AI_SERVICE_CONFIG", str(config))
    monkeypatch.setenv("AI_SERVICE_DEFAULT_TOP_K", "7")
    settings = load_settings({"threads": 2})
    assert settings.compute.device == "cpu" and settings.models.default_top_k == 7 and settings.server.threads == 2


def test_json_config_file_with_section(tmp_path, monkeypatch):
    config = tmp_path / "service.json"
    config.write_text('{"ai_service": {"log_level": "WARNING"}}')
    monkeypatch.setenv("AI_SERVICE_CONFIG", str(config))
    assert load_settings().log.level == "WARNING"


def test_config_file_with_section_tables_and_flat_keys(tmp_path, monkeypatch):
    config = tmp_path / "service.toml"
    config.write_text(
        '[ai_service]\nlog_level = "ERROR"\nsomething_else = 1\n'
        '[ai_service.engine]\namp = "fp16"\nmax_queue = 5\n'
        '[ai_service.log]\nlog_json = true\nrotation = "1 MB"\n'
    )
    monkeypatch.setenv("AI_SERVICE_CONFIG", str(config))
    monkeypatch.setenv("AI_SERVICE_MAX_QUEUE", "9")  # the environment beats a section table too
    settings = load_settings()
    assert settings.log.level == "ERROR" and settings.log.as_json is True and settings.log.rotation == "1 MB"
    assert settings.engine.precision == "fp16" and settings.engine.max_queue == 9  # amp: precision's old name
    assert settings.extra == {"something_else": 1}
    assert load_settings({"engine": {"max_queue": 3}}).engine.max_queue == 3  # overrides may use sections too


@pytest.mark.parametrize(
    ("env", "named"),
    [
        ({"AI_SERVICE_MAX_PIXELS": "lots"}, "max_pixels"),
        ({"AI_SERVICE_REQUIRE_CUDA": "maybe"}, "require_cuda"),
        ({"AI_SERVICE_DEFAULT_TOP_K": "0"}, "default_top_k"),
        ({"AI_SERVICE_LOG_JSON": "sometimes"}, "log_json"),
        ({"AI_SERVICE_AMP": "fp8"}, "precision"),
        ({"AI_SERVICE_COMPILE_MODE": "fastest"}, "compile_mode"),
        ({"AI_SERVICE_MAX_QUEUE": "0"}, "max_queue"),
        ({"AI_SERVICE_REQUEST_TIMEOUT_S": "-1"}, "request_timeout_s"),
        ({"AI_SERVICE_CONFIG": "/does/not/exist.toml"}, "AI_SERVICE_CONFIG"),
        ({"AI_SERVICE_PORT": "9000"}, "bind"),
    ],
)
def test_bad_values_fail_at_startup_naming_the_setting(env, named, monkeypatch):
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    with pytest.raises(ConfigError, match=named):
        load_settings()


@pytest.mark.parametrize("flat", [name for name in FLAT_NAMES if type(value_at(DEFAULTS, name)) in (int, float)])
def test_a_bad_number_is_an_error_never_a_string(flat, monkeypatch):
    monkeypatch.setenv(ENV_PREFIX + flat.upper(), "twelve")
    with pytest.raises(ConfigError, match=f"setting {flat} \\(AI_SERVICE_{flat.upper()}\\)"):
        load_settings()


def test_secrets_stay_out_of_repr_and_errors(monkeypatch):
    settings = load_settings({"admin_token": "hunter2", "api_keys": "k1,k2", "redis_url": "redis://:pw@host/0"})
    assert settings.security.api_keys == ("k1", "k2")
    assert not any(secret in repr(settings) for secret in ("hunter2", "k1", "pw@host"))
    with pytest.raises(ConfigError) as raised:
        load_settings({"admin_token": ["hunter2"]})
    assert "admin_token" in str(raised.value) and "hunter2" not in str(raised.value)


def test_an_unknown_key_inside_a_section_is_refused():
    with pytest.raises(ConfigError, match="engine.max_batch"):
        load_settings({"engine": {"max_batch": 4}})


def test_settings_are_frozen():
    settings = load_settings()
    with pytest.raises(ValueError):
        settings.engine.max_queue = 1  # type: ignore[misc]


def test_derived_folders_are_created_on_demand(tmp_path):
    settings = Settings(home=tmp_path / "fresh")
    settings.ensure_dirs()
    assert all(p.is_dir() for p in (settings.models_dir, settings.data_dir, settings.logs_dir))


def test_app_uses_settings(home):
    from ai_service import create_app

    app = create_app({"home": str(home), "max_upload_mb": 1, "TESTING": True})
    assert app.config["MAX_CONTENT_LENGTH"] == 1024 * 1024 and app.testing
    assert (home / "logs").is_dir() and (home / "var").is_dir() and (home / "models").is_dir()


def test_a_bad_engine_setting_stops_create_app(home):
    from ai_service import create_app

    with pytest.raises(ConfigError, match="AI_SERVICE_PRECISION"):
        create_app({"home": str(home), "amp": "fp8"})
