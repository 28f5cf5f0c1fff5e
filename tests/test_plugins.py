"""Plugins from AI_SERVICE_HOME/models/*.py and from installed packages' `ai_service.models` entry points."""

import sys
import textwrap

import pytest
import torch

from ai_service import create_app
from ai_service.models.plugins import load_directory_plugins, load_entry_point_plugins
from ai_service.models.registry import ModelLoadError, ModelRegistry

MODEL_CLASS = """
import torch
from ai_service.models.base import Batch, ImageModel, ModelInfo, top_k_predictions


class {cls}(ImageModel):
    info = ModelInfo(name="{name}", version="{version}", input_size=(4, 4), labels=("low", "high"))

    def load(self, device):
        self.network = torch.nn.Identity()
        self.device = device

    def preprocess(self, images, options):
        return Batch(torch.tensor([[0.0, float(sum(image.convert("L").tobytes())) / 255.0] for image in images]))

    def postprocess(self, outputs, items, options):
        return top_k_predictions(outputs, self.info.labels, options.top_k)
"""


def write(folder, name, text):
    folder.mkdir(parents=True, exist_ok=True)
    (folder / name).write_text(textwrap.dedent(text))


@pytest.fixture
def plugin_dir(tmp_path):
    folder = tmp_path / "home" / "models"
    write(folder, "good.py", MODEL_CLASS.format(cls="GoodModel", name="good", version="1"))
    write(
        folder,
        "hook.py",
        MODEL_CLASS.format(cls="HookModel", name="hooked", version="3")
        + """
def register(registry):
    registry.register(HookModel())
    registry.register(type("Second", (HookModel,), {"info": HookModel.info.__class__(name="hooked", version="4")})())
""",
    )
    write(folder, "broken.py", "import this_module_does_not_exist_anywhere\n")
    write(folder, "twin.py", MODEL_CLASS.format(cls="Duplicate", name="good", version="1"))
    write(folder, "empty.py", "VALUE = 1\n")
    write(folder, "_private.py", "raise RuntimeError('never imported')\n")
    return folder


def test_directory_plugins_good_broken_duplicate_and_empty(plugin_dir):
    registry = ModelRegistry(torch.device("cpu"))
    assert load_directory_plugins(registry, plugin_dir) == 2
    assert registry.versions("good") == ["1"] and registry.versions("hooked") == ["3", "4"]
    assert registry.resolve("good").source == "plugin good.py"
    assert registry.resolve("hooked").source == "plugin hook.py"
    failed = {s["name"]: s for s in registry.statuses() if s["state"] == "failed"}
    assert set(failed) == {"broken", "twin", "empty"}
    assert "ModuleNotFoundError" in failed["broken"]["error"] and failed["broken"]["source"] == "plugin broken.py"
    assert "already registered" in failed["twin"]["error"]
    assert "neither register" in failed["empty"]["error"]
    with pytest.raises(ModelLoadError, match="ModuleNotFoundError"):
        registry.get("broken")
    assert "ai_service_plugins.broken" not in sys.modules


def test_plugin_failures_are_logged_with_traceback_and_the_app_serves_anyway(plugin_dir, capfd):
    app = create_app({"TESTING": True, "home": str(plugin_dir.parent), "log_level": "INFO", "log_to_file": False})
    client = app.test_client()
    models = {s["name"]: s for s in client.get("/api/v1/models").get_json()["models"]}
    assert models["broken"]["state"] == "failed" and models["good"]["state"] == "registered"
    assert "Traceback (most recent call last)" in capfd.readouterr().err
    import io

    from PIL import Image

    from tests.conftest import encode

    body = client.post(
        "/api/v1/predict", data={"model": "good", "file": (io.BytesIO(encode(Image.new("L", (2, 2), 255))), "w.png")}
    ).get_json()
    assert body["results"][0]["predictions"][0]["label"] == "high"
    failed = client.post("/api/v1/predict", data={"model": "broken", "file": (io.BytesIO(b"x"), "w.png")})
    assert failed.status_code == 503 and failed.get_json()["error"]["code"] == "model_unavailable"


def test_plugins_can_be_switched_off(plugin_dir):
    app = create_app({"TESTING": True, "home": str(plugin_dir.parent), "log_to_file": False, "load_plugins": False})
    assert "good" not in app.extensions["ai_service"].registry.names()


def test_entry_point_plugins(tmp_path, monkeypatch):
    site = tmp_path / "site"
    write(site, "acme_models.py", MODEL_CLASS.format(cls="AcmeModel", name="acme", version="2"))
    write(site, "acme_broken.py", "raise RuntimeError('bad install')\n")
    dist = site / "acme_models-1.0.dist-info"
    write(dist, "METADATA", "Metadata-Version: 2.1\nName: acme-models\nVersion: 1.0\n")
    write(
        dist,
        "entry_points.txt",
        "[ai_service.models]\nacme = acme_models\nacme-class = acme_models:AcmeModel\nacme-broken = acme_broken\n",
    )
    monkeypatch.syspath_prepend(str(site))
    registry = ModelRegistry(torch.device("cpu"))
    assert load_entry_point_plugins(registry) == 1  # the module; the class is then a duplicate
    assert registry.resolve("acme").source.startswith("entry point acme ")
    failed = {s["name"]: s["error"] for s in registry.statuses() if s["state"] == "failed"}
    assert "already registered" in failed["acme-class"] and "bad install" in failed["acme-broken"]


CONTRACT_PLUGINS = {
    "no_post.py": """
import torch
from ai_service.models.base import Batch, ImageModel, ModelInfo


class MyModel(ImageModel):
    info = ModelInfo(name="mine")

    def load(self, device):
        self.network, self.device = torch.nn.Identity(), device

    def preprocess(self, images, options):
        return Batch(torch.zeros(len(images), 2))
""",
    "no_info.py": """
import torch
from ai_service.models.base import Batch, ImageModel


class Nameless(ImageModel):
    def load(self, device):
        self.network, self.device = torch.nn.Identity(), device

    def preprocess(self, images, options):
        return Batch(torch.zeros(len(images), 2))

    def postprocess(self, outputs, items, options):
        return [{} for _ in items]
""",
    "abstract_native.py": """
from ai_service.models.builtin.native import NativeResolutionModel, native_info


class HalfDone(NativeResolutionModel):
    info = native_info("half-done", "builds a network but never says how its output becomes an image")

    def build(self):
        import torch
        return torch.nn.Identity()
""",
    "shared_base.py": '''
import torch
from ai_service.models.base import Batch, ImageModel, ModelInfo


class Base(ImageModel):
    """No info and no postprocess: a base the plugin's real model extends, not a model itself."""

    def load(self, device):
        self.network, self.device = torch.nn.Identity(), device

    def preprocess(self, images, options):
        return Batch(torch.zeros(len(images), 2))


class Real(Base):
    info = ModelInfo(name="real")

    def postprocess(self, outputs, items, options):
        return [{} for _ in items]
''',
}


def test_contract_misuse_is_answered_at_registration_with_the_code_to_write(tmp_path):
    folder = tmp_path / "home" / "models"
    for name, text in CONTRACT_PLUGINS.items():
        write(folder, name, text)
    registry = ModelRegistry(torch.device("cpu"))
    assert load_directory_plugins(registry, folder) == 1
    assert registry.names() == ["real"]
    failed = {s["name"]: s["error"] for s in registry.statuses() if s["state"] == "failed"}
    assert set(failed) == {"no_post", "no_info", "abstract_native"}
    assert (
        "MyModel does not implement postprocess; add:\n    def postprocess(self, outputs: Any, "
        "items: Sequence[ItemT], options: ModelOptions) -> list[dict[str, Any]]:"
    ) in failed["no_post"]
    assert 'Nameless has no `info`; add a class attribute:\n    info = ModelInfo(name="nameless"' in failed["no_info"]
    assert (
        "HalfDone does not implement output_image; add:\n    def output_image(self, output: torch.Tensor, "
        "mode: str) -> Image.Image:"
    ) in failed["abstract_native"]


def test_registry_register_checks_the_contract_too():
    from ai_service.models.base import Batch, ImageModel, ModelContractError, check_contract

    class NoInfo(ImageModel):
        def preprocess(self, images, options):
            return Batch(torch.zeros(len(images), 2))

        def postprocess(self, outputs, items, options):
            return []

    with pytest.raises(
        ModelContractError,
        match=r"NoInfo does not implement load; add:\n    def load\(self, "
        r"device: torch.device\) -> None:",
    ):
        check_contract(NoInfo)
    NoInfo.load = lambda self, device: None
    NoInfo.__abstractmethods__ = frozenset()
    registry = ModelRegistry(torch.device("cpu"))
    with pytest.raises(ModelContractError, match="NoInfo has no `info`; add a class attribute"):
        registry.register(NoInfo())
    with pytest.raises(ModelContractError, match="is not a model; subclass ImageModel"):
        registry.register(object())  # type: ignore[arg-type]
    assert registry.names() == []
