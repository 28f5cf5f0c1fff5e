from pathlib import Path

import pytest

from ai_service.settings import PROJECT_ROOT, ConfigError, Settings, load_settings


def test_defaults_are_sane_and_home_is_the_project_root():
    settings = load_settings(environ={})
    assert settings.home == PROJECT_ROOT == Path(__file__).resolve().parent.parent
    assert settings.device == "auto" and settings.default_model == "digits"
    assert settings.models_dir == PROJECT_ROOT / "models"
    assert settings.data_dir == PROJECT_ROOT / "var" and settings.logs_dir == PROJECT_ROOT / "logs"


def test_home_does_not_depend_on_the_working_directory(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert load_settings(environ={}).home == PROJECT_ROOT


def test_environment_is_parsed_to_types(tmp_path):
    env = {"AI_SERVICE_HOME": str(tmp_path), "AI_SERVICE_REQUIRE_CUDA": "yes", "AI_SERVICE_MAX_PIXELS": "1000",
           "AI_SERVICE_MAX_UPLOAD_MB": "2.5", "AI_SERVICE_PRELOAD": "digits, other", "AI_SERVICE_LOG_JSON": "0"}
    settings = load_settings(environ=env)
    assert settings.home == tmp_path.resolve()
    assert settings.require_cuda is True and settings.log_json is False
    assert settings.max_pixels == 1000 and settings.max_content_length == int(2.5 * 1024 * 1024)
    assert settings.preload == ("digits", "other")


def test_precedence_file_then_env_then_overrides(tmp_path):
    config = tmp_path / "service.toml"
    config.write_text('device = "cpu"\ndefault_top_k = 5\nthreads = 8\n')
    env = {"AI_SERVICE_CONFIG": str(config), "AI_SERVICE_DEFAULT_TOP_K": "7"}
    settings = load_settings({"threads": 2}, environ=env)
    assert settings.device == "cpu" and settings.default_top_k == 7 and settings.threads == 2


def test_json_config_file_with_section(tmp_path):
    config = tmp_path / "service.json"
    config.write_text('{"ai_service": {"log_level": "WARNING"}}')
    assert load_settings(environ={"AI_SERVICE_CONFIG": str(config)}).log_level == "WARNING"


@pytest.mark.parametrize("env", [
    {"AI_SERVICE_MAX_PIXELS": "lots"},
    {"AI_SERVICE_REQUIRE_CUDA": "maybe"},
    {"AI_SERVICE_DEFAULT_TOP_K": "0"},
    {"AI_SERVICE_CONFIG": "/does/not/exist.toml"},
])
def test_bad_values_fail_at_startup(env):
    with pytest.raises(ConfigError):
        load_settings(environ=env)


def test_derived_folders_are_created_on_demand(tmp_path):
    settings = Settings(home=tmp_path / "fresh")
    settings.ensure_dirs()
    assert all(p.is_dir() for p in (settings.models_dir, settings.data_dir, settings.logs_dir))


def test_app_uses_settings(home):
    from ai_service import create_app

    app = create_app({"home": str(home), "max_upload_mb": 1, "TESTING": True})
    assert app.config["MAX_CONTENT_LENGTH"] == 1024 * 1024 and app.testing
    assert (home / "logs").is_dir() and (home / "var").is_dir() and (home / "models").is_dir()
