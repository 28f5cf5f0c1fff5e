"""`ai-service models list|load|unload` (in-process and against a server) and `ai-service export-example`."""

import io
import json
import threading

import pytest
import yaml
from werkzeug.serving import make_server

from ai_service import create_app
from ai_service.cli import main

pytestmark = pytest.mark.filterwarnings("ignore::FutureWarning")


@pytest.fixture(scope="module")
def example_home(tmp_path_factory):
    home = tmp_path_factory.mktemp("example")
    assert main(["export-example", "--home", str(home)]) == 0
    return home


def test_export_example_writes_pinned_models_that_serve_correct_predictions(example_home):
    entries = yaml.safe_load((example_home / "models.yaml").read_text())["models"]
    assert [e["kind"] for e in entries] == ["torchscript", "export", "state_dict"]
    assert all(len(e["sha256"]) == 64 for e in entries)
    client = create_app({"TESTING": True, "home": str(example_home), "log_to_file": False}).test_client()
    sample = (example_home / "models" / "examples" / "seven.png").read_bytes()
    for model in ("example-digits", "example-digits@1"):
        body = client.post("/api/v1/predict", data={"model": model, "file": (io.BytesIO(sample), "7.png")}).get_json()
        assert body["results"][0]["predictions"][0]["label"] == "7", body
    shapes = client.post("/api/v1/predict", data={"model": "example-shapes", "file": (io.BytesIO(sample), "7.png")})
    assert shapes.status_code == 200
    assert main(["export-example", "--home", str(example_home)]) == 1  # would change pinned files


def test_export_example_leaves_a_users_own_models_file_alone(tmp_path, capsys):
    home = tmp_path / "home"
    home.mkdir()
    (home / "models.yaml").write_text("models: []\n")
    assert main(["export-example", "--home", str(home)]) == 0
    assert (home / "models.yaml").read_text() == "models: []\n"
    assert "example-digits" in (home / "models.example.yaml").read_text()


def test_models_list_and_local_load_unload(example_home, capsys):
    assert main(["models", "list", "--home", str(example_home)]) == 0
    table = capsys.readouterr().out
    assert "example-digits@2*" in table and "example-shapes@1" in table and "digits@1.0" in table
    assert main(["models", "list", "--json", "--home", str(example_home)]) == 0
    assert {s["key"] for s in json.loads(capsys.readouterr().out)} >= {"example-digits@1", "edges@1.0"}
    assert main(["models", "load", "example-shapes", "--home", str(example_home)]) == 0
    assert "1,520,931 parameters" in capsys.readouterr().out
    assert main(["models", "unload", "example-digits@1", "--home", str(example_home)]) == 0
    assert "back to baseline: True" in capsys.readouterr().out
    assert main(["models", "load", "no-such-model", "--home", str(example_home)]) == 1


def test_models_list_exit_status_flags_failures(tmp_path, capsys):
    home = tmp_path / "home"
    (home / "models").mkdir(parents=True)
    (home / "models" / "broken.py").write_text("raise ImportError('nope')\n")
    assert main(["models", "list", "--home", str(home)]) == 1
    assert "broken" in capsys.readouterr().out


def test_remote_load_and_unload_through_the_admin_api(home, capsys):
    app = create_app({"home": str(home), "log_to_file": False, "admin_token": "tok"})
    server = make_server("127.0.0.1", 0, app, threaded=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    url = f"http://127.0.0.1:{server.server_port}"
    try:
        assert main(["models", "load", "edges", "--url", url, "--token", "tok", "--timeout", "10"]) == 0
        assert "edges@1.0: loaded" in capsys.readouterr().out
        assert main(["models", "unload", "edges", "--url", url, "--token", "tok", "--timeout", "10"]) == 0
        assert "edges@1.0: registered" in capsys.readouterr().out
        with pytest.raises(SystemExit, match="401 unauthorized"):
            main(["models", "load", "edges", "--url", url, "--token", "bad", "--timeout", "10"])
    finally:
        server.shutdown()
        thread.join(5)
