"""The naive baseline: the classic Flask tutorial server, run with gunicorn sync workers.

What most "serve a PyTorch model with Flask" tutorials write: models loaded at import, a full-size
PIL decode, the torchvision transforms built inside the view for every request, one image per
forward under torch.no_grad(), softmax + top-k, jsonify. No batching, no channels_last, default
torch threads (BENCH_TORCH_THREADS=1 sets one per worker: bench/serving.py's "plain" server). Served by
`gunicorn -k sync -w N naive_flask:app` (bench/serving.py starts it).

BENCH_RESNET_WEIGHTS names the resnet18 state_dict the benchmark generated (random, timing only);
BENCH_DEVICE=cuda puts both models and each request's tensor on the GPU (bench/serving_gpu.py).
"""

from __future__ import annotations

import io
import os

import torch
import torchvision
from flask import Flask, jsonify, request
from PIL import Image
from torchvision import transforms

from ai_service.models.builtin.digits import WEIGHTS_PATH, SimpleCNN

app = Flask(__name__)
DEVICE = torch.device(os.environ.get("BENCH_DEVICE", "cpu"))
if os.environ.get("BENCH_TORCH_THREADS"):  # the well-sized variant: one torch thread per sync worker
    torch.set_num_threads(int(os.environ["BENCH_TORCH_THREADS"]))

digits = SimpleCNN()
digits.load_state_dict(torch.load(WEIGHTS_PATH, map_location="cpu", weights_only=True))
digits.eval()
resnet = torchvision.models.resnet18(num_classes=1000)
resnet.load_state_dict(torch.load(os.environ["BENCH_RESNET_WEIGHTS"], map_location="cpu", weights_only=True))
resnet.eval()
MODELS = {"digits": digits.to(DEVICE), "resnet18-demo": resnet.to(DEVICE)}


@app.route("/predict", methods=["POST"])
def predict():
    name = request.form.get("model", "digits")
    image = Image.open(io.BytesIO(request.files["file"].read()))
    if name == "digits":
        transform = transforms.Compose(
            [
                transforms.Grayscale(),
                transforms.Resize((28, 28)),
                transforms.ToTensor(),
                transforms.Normalize((0.1307,), (0.3081,)),
            ]
        )
    else:
        transform = transforms.Compose(
            [
                transforms.Resize((224, 224)),
                transforms.ToTensor(),
                transforms.Normalize([0.485, 0.456, 0.406], [0.229, 0.224, 0.225]),
            ]
        )
    tensor = transform(image.convert("RGB")).unsqueeze(0).to(DEVICE)
    with torch.no_grad():
        outputs = MODELS[name](tensor)
    probabilities = torch.nn.functional.softmax(outputs[0], dim=0)
    scores, indices = (values.tolist() for values in torch.topk(probabilities, 3))  # one copy each from a GPU
    return jsonify({"model": name, "predictions": [{"index": i, "score": s} for s, i in zip(scores, indices)]})


@app.route("/health")
def health():
    return jsonify({"status": "ok"})
