"""The result cache (ai_service/service/cache.py): repeats answered without the model, in process or through Redis."""

from __future__ import annotations

import io
import time
from pathlib import Path

import pytest
import torch
import torchvision
from brokers import redis_database
from databases import free_port

from ai_service import create_app
from ai_service.service.cache import MemoryCache, decode, encode

ROOT = Path(__file__).resolve().parents[1]
DIGIT = (ROOT / "ai_service/models/builtin/examples/handwritten-7.png").read_bytes()
PREDICT = "/api/v1/predict"


def make_app(home: Path, **settings):
    return create_app({"home": str(home), "log_to_file": False, "TESTING": True, **settings})


def post(client, data: bytes = DIGIT, **fields):
    response = client.post(PREDICT, data={"file": (io.BytesIO(data), "seven.png"), **fields})
    assert response.status_code == 200, response.get_data(as_text=True)
    return response


@pytest.fixture
def app(tmp_path):
    app = make_app(tmp_path / "home")
    yield app
    app.extensions["ai_service"].close()


def test_memory_cache_is_a_byte_bounded_lru():
    cache = MemoryCache(max_bytes=100, max_entry_bytes=60)
    cache.put("a", b"x" * 40)
    cache.put("b", b"y" * 40)
    assert cache.get("a") == b"x" * 40  # a is now the most recently used
    cache.put("c", b"z" * 40)  # 120 bytes: the least recently used (b) goes
    assert cache.get("b") is None and cache.get("a") and cache.get("c") and cache.size_bytes == 80
    cache.put("big", b"!" * 61)  # over the per-entry cap: never stored
    assert cache.get("big") is None and cache.size_bytes == 80


def test_a_repeat_is_answered_from_the_cache_with_its_own_request_id_and_timings(app):
    client = app.test_client()
    first, second = post(client), post(client)
    body1, body2 = first.get_json(), second.get_json()
    assert "cached" not in body1 and "cached" not in body1["results"][0]
    assert body2["cached"] is True and body2["results"][0]["cached"] is True
    assert first.headers["X-Request-ID"] != second.headers["X-Request-ID"]
    assert body2["timing_ms"]["cache"] > 0 and body2["timing_ms"]["forward"] == 0
    assert body2["timing_ms"]["total"] < body1["timing_ms"]["total"]
    strip = {"cached", "history_id"}
    assert {k: v for k, v in body2["results"][0].items() if k not in strip} == {
        k: v for k, v in body1["results"][0].items() if k not in strip
    }
    assert body1["results"][0]["history_id"] != body2["results"][0]["history_id"]  # history records both


def test_cache_off_and_other_options_run_the_model(app):
    client = app.test_client()
    post(client)
    assert "cached" not in post(client, cache="off").get_json()
    assert "cached" not in post(client, top_k="5").get_json()  # an option the model sees is part of the key
    assert post(client, top_k="5").get_json()["cached"] is True
    rejected = client.post(PREDICT, data={"file": (io.BytesIO(DIGIT), "x.png"), "cache": "maybe"})
    assert rejected.status_code == 422


def test_a_batch_mixes_cached_and_computed_answers_in_order(app):
    client = app.test_client()
    post(client)
    other = (ROOT / "ai_service/models/builtin/examples/pixel-sprite.png").read_bytes()
    response = client.post(
        PREDICT, data={"file": [(io.BytesIO(other), "new.png"), (io.BytesIO(DIGIT), "seven.png")], "model": "digits"}
    )
    body = response.get_json()
    assert "cached" not in body
    assert [r.get("cached") for r in body["results"]] == [None, True]
    assert [r["filename"] for r in body["results"]] == ["new.png", "seven.png"]
    assert [r["index"] for r in body["results"]] == [0, 1]


def test_history_marks_cached_answers(app):
    client = app.test_client()
    post(client)
    result = post(client).get_json()["results"][0]
    app.extensions["ai_service"].history.writer.flush(5)
    entry = client.get(f"/api/v1/history/{result['history_id']}").get_json()
    assert entry["result"]["cached"] is True and entry["status"] == "ok"


def test_switched_off_the_model_always_runs(tmp_path):
    app = make_app(tmp_path / "home", result_cache="off")
    try:
        client = app.test_client()
        post(client)
        assert "cached" not in post(client).get_json()
    finally:
        app.extensions["ai_service"].close()


def write_model(home: Path, bias: tuple[float, float], versions: tuple[str, ...] = ("1",)) -> None:
    """A tiny torchvision classifier (random init, no download) whose answer the fc bias decides."""
    models = home / "models"
    models.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(0)
    network = torchvision.models.resnet18(num_classes=2)
    with torch.no_grad():
        network.fc.weight.zero_()
        network.fc.bias.copy_(torch.tensor(bias))
    torch.save(network.state_dict(), models / "tiny.pt")
    entries = "".join(
        f"  - name: tiny\n    version: '{version}'\n    kind: state_dict\n    architecture: resnet18\n"
        "    num_classes: 2\n    weights: tiny.pt\n    input_size: [32, 32]\n    labels: [left, right]\n"
        for version in versions
    )
    (home / "models.yaml").write_text("models:\n" + entries)


def test_new_weights_or_a_new_version_never_get_the_old_answer(tmp_path):
    home = tmp_path / "home"
    write_model(home, (0.0, 5.0), versions=("1", "2"))
    app = make_app(home)
    try:
        client, registry = app.test_client(), app.extensions["ai_service"].registry
        assert post(client, model="tiny@1").get_json()["results"][0]["predictions"][0]["label"] == "right"
        assert post(client, model="tiny@1").get_json()["cached"] is True
        assert "cached" not in post(client, model="tiny@2").get_json()  # another version: its own answers
        time.sleep(0.01)  # a new modification time even on coarse file systems
        write_model(home, (5.0, 0.0), versions=("1", "2"))
        registry.unload("tiny@1")
        registry.load("tiny@1")
        body = post(client, model="tiny@1").get_json()
        assert "cached" not in body and body["results"][0]["predictions"][0]["label"] == "left"
    finally:
        app.extensions["ai_service"].close()


def test_images_survive_the_cache_losslessly():
    from PIL import Image

    image = Image.new("RGBA", (7, 5), (10, 20, 30, 40))
    stored = encode({"index": 3, "filename": "x.png", "image": image, "width": 7, "geometry": {"a": [1, 2]}}, 10_000)
    back = decode(stored)
    assert "index" not in back and "filename" not in back
    assert back["image"].tobytes() == image.tobytes() and back["image"].mode == "RGBA"
    assert encode({"image": image}, 10) is None  # over the cap
    assert decode(b"not json") is None


def test_redis_is_shared_by_every_worker(tmp_path):
    with redis_database() as url:
        # The key holds the precision the model runs in, known once it is loaded: a worker looks up loaded models.
        first, second = (make_app(tmp_path / name, redis_url=url, preload="digits") for name in "ab")
        try:
            post(first.test_client())
            body = post(second.test_client()).get_json()  # another process, the same Redis
            assert body["cached"] is True
            import redis

            keys = redis.Redis.from_url(url).keys("ai_service:result:*")
            assert len(keys) == 1 and 0 < redis.Redis.from_url(url).pttl(keys[0]) <= 3600 * 1000
        finally:
            first.extensions["ai_service"].close()
            second.extensions["ai_service"].close()


def test_a_dead_redis_degrades_to_no_cache_never_an_error(tmp_path):
    app = make_app(tmp_path / "home", redis_url=f"redis://127.0.0.1:{free_port()}/0")
    try:
        client = app.test_client()
        started = time.perf_counter()
        for _ in range(3):
            body = post(client).get_json()
            assert "cached" not in body and body["results"][0]["predictions"][0]["label"] == "7"
        assert time.perf_counter() - started < 20  # one short connect timeout, then the cache is skipped
    finally:
        app.extensions["ai_service"].close()
