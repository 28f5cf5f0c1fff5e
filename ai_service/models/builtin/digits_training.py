"""Reproducible training of the `digits` weights from scikit-learn's bundled digits dataset."""
from __future__ import annotations

import hashlib
import io
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

from ai_service.models.builtin.digits import SimpleCNN, normalize_digit, to_input_tensor

SPLIT_SEED = 0
HELD_OUT_FRACTION = 0.2
RESAMPLERS = (Image.Resampling.NEAREST, Image.Resampling.BILINEAR, Image.Resampling.BICUBIC)


@dataclass
class DigitsSplit:
    """8×8 digits rendered to uint8 (white ink on black), split into train and held-out sets."""

    train_images: np.ndarray
    train_labels: np.ndarray
    test_images: np.ndarray
    test_labels: np.ndarray


def load_digits_split() -> DigitsSplit:
    """scikit-learn's 1797 digits as uint8 8×8 images, with a fixed stratified 80/20 split."""
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    digits = load_digits()
    images = np.round(digits.images * (255.0 / 16.0)).astype(np.uint8)
    x_train, x_test, y_train, y_test = train_test_split(
        images, digits.target, test_size=HELD_OUT_FRACTION, random_state=SPLIT_SEED, stratify=digits.target)
    return DigitsSplit(x_train, y_train.astype(np.int64), x_test, y_test.astype(np.int64))


def render_digit(pixels: np.ndarray, size: int, resample: Image.Resampling = Image.Resampling.BILINEAR,
                 angle: float = 0.0) -> Image.Image:
    """An 8×8 digit as a size×size grayscale picture, as a user might upload it."""
    image = Image.fromarray(pixels, mode="L").resize((size, size), resample)
    if angle:
        image = image.rotate(angle, resample=Image.Resampling.BILINEAR, fillcolor=0)
    return image


def augmented_inputs(images: np.ndarray, labels: np.ndarray, copies: int, rng: np.random.Generator
                     ) -> tuple[torch.Tensor, torch.Tensor]:
    """Each digit as-is plus `copies` re-renders at random size, resampling and slight rotation."""
    arrays, targets = [], []
    for pixels, label in zip(images, labels):
        arrays.append(normalize_digit(Image.fromarray(pixels, mode="L")))
        targets.append(label)
        for _ in range(copies):
            size = int(rng.integers(8, 96))
            resample = RESAMPLERS[int(rng.integers(len(RESAMPLERS)))]
            angle = float(rng.uniform(-12, 12))
            arrays.append(normalize_digit(render_digit(pixels, size, resample, angle)))
            targets.append(label)
    return to_input_tensor(arrays), torch.tensor(np.asarray(targets), dtype=torch.long)


def evaluate(network: torch.nn.Module, inputs: torch.Tensor, labels: torch.Tensor) -> float:
    """Accuracy of `network` on prepared inputs."""
    network.eval()
    with torch.inference_mode():
        predicted = network(inputs).argmax(dim=1)
    return float((predicted == labels).float().mean())


def train_digits(output: Path, epochs: int = 12, copies: int = 4, seed: int = 0) -> dict[str, float | str]:
    """Train SimpleCNN deterministically (single thread, fixed seeds) and save its state_dict."""
    previous_threads = torch.get_num_threads()
    torch.set_num_threads(1)
    torch.manual_seed(seed)
    try:
        split = load_digits_split()
        rng = np.random.default_rng(seed)
        train_x, train_y = augmented_inputs(split.train_images, split.train_labels, copies, rng)
        test_x = to_input_tensor([normalize_digit(Image.fromarray(p, mode="L")) for p in split.test_images])
        test_y = torch.from_numpy(split.test_labels)
        network = SimpleCNN()
        optimiser = torch.optim.Adam(network.parameters(), lr=2e-3)
        scheduler = torch.optim.lr_scheduler.StepLR(optimiser, step_size=max(1, epochs // 3), gamma=0.4)
        generator = torch.Generator().manual_seed(seed)
        for _ in range(epochs):
            network.train()
            for indices in torch.randperm(len(train_y), generator=generator).split(64):
                optimiser.zero_grad()
                loss = F.cross_entropy(network(train_x[indices]), train_y[indices])
                loss.backward()
                optimiser.step()
            scheduler.step()
        accuracy = evaluate(network, test_x, test_y)
        buffer = io.BytesIO()
        torch.save(network.state_dict(), buffer)
        output.parent.mkdir(parents=True, exist_ok=True)
        output.write_bytes(buffer.getvalue())
        return {"held_out_accuracy": accuracy, "sha256": hashlib.sha256(buffer.getvalue()).hexdigest(),
                "train_samples": float(len(train_y)), "path": str(output)}
    finally:
        torch.set_num_threads(previous_threads)
