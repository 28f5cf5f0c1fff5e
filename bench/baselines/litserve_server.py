"""LitServe serving the same two models, with its batching enabled (max_batch_size, batch_timeout).

Same preprocessing work as the other servers (decode, resize to the model input, normalize),
written the LitServe way: decode_request per item, batch() stacks, predict() runs one forward,
unbatch() splits. One server per model (a LitServer per model so that an idle model's polling
inference loop does not steal CPU from the measured one).

    python bench/baselines/litserve_server.py --model resnet18-demo --port 8002 --workers 2
"""

from __future__ import annotations

import argparse
import io
import os

import litserve as ls
import torch
import torchvision
from PIL import Image
from torchvision.transforms import functional as TF

from ai_service.models.builtin.digits import WEIGHTS_PATH, SimpleCNN

SPECS = {
    "digits": {"size": (28, 28), "mode": "L", "mean": [0.1307], "std": [0.3081]},
    "resnet18-demo": {"size": (224, 224), "mode": "RGB", "mean": [0.485, 0.456, 0.406], "std": [0.229, 0.224, 0.225]},
}


class ImageClassifierAPI(ls.LitAPI):
    """decode → batch → forward → unbatch → top-3, per LitServe's batching contract."""

    def __init__(self, model_name: str, threads: int, **kwargs) -> None:
        super().__init__(**kwargs)
        self.model_name, self.threads = model_name, threads
        self.input_spec = SPECS[model_name]

    def setup(self, device: str) -> None:
        torch.set_num_threads(self.threads)
        if self.model_name == "digits":
            network = SimpleCNN()
            network.load_state_dict(torch.load(WEIGHTS_PATH, map_location="cpu", weights_only=True))
        else:
            network = torchvision.models.resnet18(num_classes=1000)
            network.load_state_dict(
                torch.load(os.environ["BENCH_RESNET_WEIGHTS"], map_location="cpu", weights_only=True)
            )
            network = network.to(memory_format=torch.channels_last)
        self.network = network.eval().to(device)
        self.device = device

    def decode_request(self, request):
        image = Image.open(io.BytesIO(request["file"].file.read()))
        image.draft(self.input_spec["mode"], self.input_spec["size"])
        image = image.convert(self.input_spec["mode"]).resize(self.input_spec["size"], Image.Resampling.BILINEAR)
        return TF.normalize(TF.to_tensor(image), self.input_spec["mean"], self.input_spec["std"])

    def batch(self, inputs):
        return torch.stack(inputs)

    def predict(self, batch):
        with torch.inference_mode():
            return torch.softmax(self.network(batch.to(self.device)), dim=1).cpu()  # one copy per batch from a GPU

    def unbatch(self, output):
        return list(output)

    def encode_response(self, probabilities):
        scores, indices = torch.topk(probabilities, 3)
        return {
            "model": self.model_name,
            "predictions": [{"index": int(i), "score": float(s)} for s, i in zip(scores, indices)],
        }


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--model", choices=sorted(SPECS), required=True)
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--workers", type=int, default=1, help="inference processes (workers_per_device)")
    parser.add_argument("--threads", type=int, default=1, help="torch threads per inference process")
    parser.add_argument("--max-batch-size", type=int, default=8)
    parser.add_argument("--batch-timeout", type=float, default=0.005)
    parser.add_argument("--accelerator", default="cpu", help="cpu or cuda (LitServer's accelerator)")
    args = parser.parse_args()
    api = ImageClassifierAPI(
        args.model,
        args.threads,
        max_batch_size=args.max_batch_size,
        batch_timeout=args.batch_timeout,
        api_path="/predict",
    )
    server = ls.LitServer(api, accelerator=args.accelerator, devices=1, workers_per_device=args.workers, timeout=60)
    server.run(host="127.0.0.1", port=args.port, generate_client_file=False, log_level="warning")


if __name__ == "__main__":
    main()
