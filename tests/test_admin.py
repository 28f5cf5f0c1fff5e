"""Management endpoints (load/unload/offload) behind AI_SERVICE_ADMIN_TOKEN, and the /system report."""

import io

import pytest
from PIL import Image

from ai_service import create_app
from tests.conftest import encode

TOKEN = "s3cret-admin-token"


@pytest.fixture
def admin(home):
    app = create_app({"TESTING": True, "home": str(home), "log_to_file": False, "admin_token": TOKEN})
    return app.test_client()


def call(client, path, token=TOKEN, scheme="Bearer"):
    headers = {"Authorization": f"{scheme} {token}"} if token is not None else {}
    return client.post(f"/api/v1/models/{path}", headers=headers)


@pytest.mark.parametrize("action", ["load", "unload", "offload"])
def test_without_a_configured_token_management_is_disabled(client, action):
    response = call(client, f"digits/{action}", token="anything")
    assert response.status_code == 403 and response.get_json()["error"]["code"] == "admin_disabled"
    assert client.application.extensions["ai_service"].registry.resolve("digits").state == "registered"


@pytest.mark.parametrize(
    "token, scheme", [(None, "Bearer"), ("wrong", "Bearer"), (TOKEN, "Basic"), (TOKEN + "x", "Bearer"), ("", "Bearer")]
)
def test_a_missing_or_wrong_token_is_refused(admin, token, scheme):
    response = call(admin, "digits/load", token=token, scheme=scheme)
    assert response.status_code == 401 and response.get_json()["error"]["code"] == "unauthorized"
    assert response.headers["WWW-Authenticate"].startswith("Bearer")
    assert admin.application.extensions["ai_service"].registry.resolve("digits").state == "registered"


def test_load_offload_predict_unload_cycle(admin):
    loaded = call(admin, "digits/load")
    assert loaded.status_code == 200
    body = loaded.get_json()
    assert body["action"] == "load" and body["model"]["state"] == "loaded"
    assert body["model"]["parameters"] == 21840 and body["model"]["bytes_on_device"] > 80_000
    offloaded = call(admin, "digits@1.0/offload").get_json()["model"]
    assert offloaded["state"] == "offloaded" and offloaded["bytes_offloaded"] == body["model"]["bytes_on_device"]
    predicted = admin.post(
        "/api/v1/predict", data={"model": "digits", "file": (io.BytesIO(encode(Image.new("L", (28, 28)))), "blank.png")}
    )
    assert predicted.status_code == 200
    assert admin.get("/api/v1/models/digits").get_json()["state"] == "loaded"
    unloaded = call(admin, "digits/unload").get_json()["model"]
    assert unloaded["state"] == "registered" and unloaded["bytes_on_device"] == 0 and unloaded["parameters"] == 0


def test_management_errors(admin):
    assert call(admin, "nope/load").get_json()["error"]["code"] == "unknown_model"
    assert call(admin, "digits/explode").status_code == 404
    conflict = call(admin, "digits/offload")
    assert conflict.status_code == 409 and conflict.get_json()["error"]["code"] == "invalid_state"
    assert admin.get("/api/v1/models/digits/load").status_code == 405


def test_system_reports_devices_memory_and_model_states(admin):
    call(admin, "edges/load")
    body = admin.get("/api/v1/system").get_json()
    assert body["device"]["device"] == "cpu" and body["devices"][0]["type"] == "cpu"
    assert body["process_rss"] > 10_000_000
    assert "memory_allocated" in body and "memory_reserved" in body
    assert body["memory"]["eviction"] == "unload" and body["memory"]["loaded_models"] == 1
    models = {m["key"]: m for m in body["models"]}
    assert models["edges@1.0"]["state"] == "loaded" and models["edges@1.0"]["last_used"] is not None
    assert models["digits@1.0"]["state"] == "registered" and models["digits@1.0"]["bytes_on_device"] == 0
    assert {"parameters", "bytes_on_device", "bytes_offloaded", "source", "in_use"} <= set(models["digits@1.0"])


def test_model_detail_and_unknown_model(client):
    detail = client.get("/api/v1/models/digits").get_json()
    assert detail["key"] == "digits@1.0" and detail["versions"] == ["1.0"] and detail["default"] is True
    assert client.get("/api/v1/models/digits@9").status_code == 404


def test_memory_settings_reach_the_registry(home):
    app = create_app(
        {
            "home": str(home),
            "log_to_file": False,
            "max_loaded_models": 1,
            "gpu_memory_budget": "50%",
            "eviction": "offload",
            "warmup": True,
        }
    )
    registry = app.extensions["ai_service"].registry
    assert registry.max_loaded == 1 and registry.eviction == "offload" and registry.warmup
    assert 0 < registry.memory_budget
    registry.get("digits")
    registry.get("edges")
    assert registry.loaded_names() == ["edges"] and registry.resolve("digits").state == "offloaded"


@pytest.mark.parametrize(
    "overrides",
    [
        {"eviction": "sometimes"},
        {"gpu_memory_budget": "lots"},
        {"gpu_memory_budget": "150%"},
        {"max_loaded_models": -1},
    ],
)
def test_bad_memory_settings_stop_the_start(home, overrides):
    from ai_service.settings import ConfigError

    with pytest.raises(ConfigError):
        create_app({"home": str(home), "log_to_file": False, **overrides})
