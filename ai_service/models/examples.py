"""`ai-service export-example`: real model files plus a models file, to see the declarative path work at once."""
from __future__ import annotations

import warnings
from pathlib import Path
from typing import Any

import numpy as np
import torch
import yaml
from PIL import Image
from torch import nn

from ai_service.models.builtin.digits import MEAN, STD, WEIGHTS_PATH, SimpleCNN, normalize_digit
from ai_service.models.loaders import sha256_of

EXAMPLE_DIR = "examples"
HEADER = "# Written by `ai-service export-example`."
STATE_DICT_ARCHITECTURE = "mobilenet_v3_small"
STATE_DICT_LABELS = ("circle", "square", "triangle")


def _digits_network() -> nn.Module:
    network = SimpleCNN()
    network.load_state_dict(torch.load(WEIGHTS_PATH, map_location="cpu", weights_only=True))
    return network.eval()


def _sample_digit(folder: Path) -> tuple[Path, int]:
    """A held-out handwritten 7 as the 28×28 white-on-black picture the exported networks expect."""
    from ai_service.models.builtin.digits_training import load_digits_split

    split = load_digits_split()
    index = int(np.flatnonzero(split.test_labels == 7)[0])
    canvas = normalize_digit(Image.fromarray(split.test_images[index], mode="L"))
    path = folder / "seven.png"
    Image.fromarray(np.rint(canvas * 255).astype(np.uint8), "L").resize((112, 112), Image.Resampling.NEAREST).save(path)
    return path, 7


class ExampleExists(FileExistsError):
    """The examples were exported before; re-exporting would change files a models file pins by sha256."""


def write_example(home: Path, force: bool = False) -> dict[str, Any]:
    """Write TorchScript, torch.export and safetensors files under home/models/examples and a models file
    (models.yaml, or models.example.yaml when the home already has a models.yaml of its own)."""
    models_dir = home / "models"
    folder = models_dir / EXAMPLE_DIR
    if folder.exists() and not force:
        raise ExampleExists(f"{folder} exists already; pass --force to export again (this rewrites the files and "
                            "the models file that pins them)")
    folder.mkdir(parents=True, exist_ok=True)
    network = _digits_network()
    example_input = torch.zeros(2, 1, 28, 28)

    script_path = folder / "digits.torchscript.pt"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)  # TorchScript is deprecated upstream, still supported
        torch.jit.save(torch.jit.trace(network, example_input), str(script_path))
    export_path = folder / "digits.pt2"
    batch = torch.export.Dim("batch", min=1, max=1024)
    torch.export.save(torch.export.export(network, (example_input,), dynamic_shapes=({0: batch},)), str(export_path))

    from safetensors.torch import save_file
    import torchvision

    torch.manual_seed(0)
    classifier = torchvision.models.get_model(STATE_DICT_ARCHITECTURE, weights=None,
                                              num_classes=len(STATE_DICT_LABELS))
    weights_path = folder / f"{STATE_DICT_ARCHITECTURE}.safetensors"
    save_file({k: v.contiguous() for k, v in classifier.state_dict().items()}, str(weights_path))
    (folder / "shapes.txt").write_text("\n".join(STATE_DICT_LABELS) + "\n", encoding="utf-8")
    sample, expected = _sample_digit(folder)

    digits_common = {"task": "classification", "input_size": [28, 28], "mode": "L", "mean": [MEAN], "std": [STD],
                     "labels": [str(i) for i in range(10)]}
    entries = [
        {"name": "example-digits", "kind": "torchscript", "version": "1", "weights": f"{EXAMPLE_DIR}/{script_path.name}",
         "sha256": sha256_of(script_path), **digits_common,
         "description": "The digits CNN as TorchScript (expects a centered white digit on black)."},
        {"name": "example-digits", "kind": "export", "version": "2", "weights": f"{EXAMPLE_DIR}/{export_path.name}",
         "sha256": sha256_of(export_path), **digits_common,
         "description": "The same CNN as a torch.export program (dynamic batch); newest version, so the default."},
        {"name": "example-shapes", "kind": "state_dict", "architecture": STATE_DICT_ARCHITECTURE,
         "num_classes": len(STATE_DICT_LABELS), "weights": f"{EXAMPLE_DIR}/{weights_path.name}",
         "sha256": sha256_of(weights_path), "labels_file": f"{EXAMPLE_DIR}/shapes.txt", "input_size": [224, 224],
         "mode": "RGB", "mean": [0.485, 0.456, 0.406], "std": [0.229, 0.224, 0.225],
         "description": "UNTRAINED mobilenet_v3_small (random weights): shows the state_dict + safetensors "
                        "format; put your fine-tuned weights in its place."},
    ]
    target = home / "models.yaml"
    if target.exists() and not force and not target.read_text(encoding="utf-8").startswith(HEADER):
        target = home / "models.example.yaml"
    text = (f"{HEADER} Paths are relative to AI_SERVICE_HOME/models/.\n"
            + yaml.safe_dump({"models": entries}, sort_keys=False, allow_unicode=True))
    target.write_text(text, encoding="utf-8")
    return {"models_file": str(target), "files": [str(p) for p in (script_path, export_path, weights_path)],
            "sample_image": str(sample), "sample_label": str(expected), "models": [e["name"] + "@" + e.get("version", "1")
                                                                                  for e in entries]}
