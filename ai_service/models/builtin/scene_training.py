"""Reproducible training of `digits-detect` and `digits-segment` on composed digit scenes (needs scikit-image).

Deterministic: one torch thread, fixed seeds, scenes drawn from a seeded generator; the same command writes the
same weights on the same machine. Each round draws fresh training scenes (training digits only) and trains one
pass over them; the report gives the held-out score (test digits only), wall and CPU time, and the weights' hash.
"""

from __future__ import annotations

import hashlib
import math
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

from ai_service.models.base import ImageModel, ModelOptions
from ai_service.models.builtin.scene_networks import (
    CENTER,
    DIGITS,
    OFFSET,
    SIDE,
    SIZE,
    STRIDE,
    DetectNet,
    SegmentNet,
    fit_scene,
    load_weights,
    save_weights,
)
from ai_service.models.builtin.scenes import Scene, mask_classes, mean_average_precision, mean_iou, scene_set

BATCH = 8
#: mAP ranks every box down to this score (as VOC/COCO evaluations do), not only those the page shows by default.
MAP_THRESHOLD = 0.05
#: Seeds of the held-out scenes the training report scores on (the tests draw their own, with other seeds).
REPORT_SEED = 99
#: The committed digits-detect weights, which the segmenter starts from (see segment_start).
DETECT_WEIGHTS = Path(__file__).resolve().parent / "weights" / "digits-detect.pt"


def box_in_input(scene: Scene, geometry: Any) -> np.ndarray:
    """The scene's boxes in network-input pixels."""
    corners = [(*geometry.to_input(b[0], b[1]), *geometry.to_input(b[2], b[3])) for b in scene.boxes]
    return np.asarray(corners, np.float32).reshape(-1, 4)


def detect_targets(boxes: np.ndarray, labels: np.ndarray) -> tuple[np.ndarray, ...]:
    """CenterNet targets at 1/STRIDE: (1, G, G) gaussian center heatmap, (G, G) digit per cell near a center
    (-100 elsewhere: ignored), (4, G, G) log size + offset and (G, G) mask of the center cells."""
    grid = SIDE // STRIDE
    heat = np.zeros((1, grid, grid), np.float32)
    digits = np.full((grid, grid), -100, np.int64)
    regression = np.zeros((4, grid, grid), np.float32)
    centers = np.zeros((grid, grid), np.float32)
    ys, xs = np.mgrid[0:grid, 0:grid].astype(np.float32)
    for (x0, y0, x1, y1), label in zip(boxes, labels):
        cx, cy = (x0 + x1) / 2 / STRIDE, (y0 + y1) / 2 / STRIDE
        ix, iy = min(grid - 1, int(cx)), min(grid - 1, int(cy))
        w, h = max(x1 - x0, 1.0) / STRIDE, max(y1 - y0, 1.0) / STRIDE
        sigma = max(0.5, min(w, h) / 6)
        gaussian = np.exp(-((xs - ix) ** 2 + (ys - iy) ** 2) / (2 * sigma**2))
        heat[0] = np.maximum(heat[0], gaussian)
        heat[0, iy, ix] = 1.0
        digits[gaussian >= 0.5] = label
        regression[:, iy, ix] = (math.log(w), math.log(h), cx - ix, cy - iy)
        centers[iy, ix] = 1.0
    return heat, digits, regression, centers


def class_map_in_input(scene: Scene, geometry: Any) -> np.ndarray:
    """The scene's class map fitted like the image (nearest neighbour), padding as background."""
    left, top, right, bottom = geometry.content
    fitted = Image.fromarray(scene.classes, "L").resize((right - left, bottom - top), Image.Resampling.NEAREST)
    canvas = np.zeros((SIDE, SIDE), np.int64)
    canvas[top:bottom, left:right] = np.asarray(fitted)
    return canvas


def focal_loss(logits: torch.Tensor, heat: torch.Tensor) -> torch.Tensor:
    """CenterNet's penalty-reduced focal loss, per object."""
    probability = logits.sigmoid().clamp(1e-4, 1 - 1e-4)
    positive = heat.eq(1).float()
    positive_loss = (1 - probability) ** 2 * probability.log() * positive
    negative_loss = (1 - heat) ** 4 * probability**2 * (1 - probability).log() * (1 - positive)
    return -(positive_loss.sum() + negative_loss.sum()) / positive.sum().clamp_min(1)


def detect_batch(scenes: Sequence[Scene]) -> tuple[torch.Tensor, ...]:
    inputs, targets = [], []
    for scene in scenes:
        x, geometry = fit_scene(scene.image)
        inputs.append(x)
        targets.append(detect_targets(box_in_input(scene, geometry), scene.labels))
    return torch.from_numpy(np.stack(inputs)), *(torch.from_numpy(np.stack(t)) for t in zip(*targets))


def detect_loss(network: torch.nn.Module, batch: tuple[torch.Tensor, ...]) -> torch.Tensor:
    """Focal loss on centers, cross-entropy on the digit near each center, L1 on size and offset at centers."""
    inputs, heat, digits, regression, centers = batch
    output = network(inputs)
    mask = centers[:, None]
    count = centers.sum().clamp_min(1)
    size_loss = (F.l1_loss(output[:, SIZE], regression[:, :2], reduction="none") * mask).sum() / count
    offset_loss = (F.l1_loss(output[:, OFFSET], regression[:, 2:], reduction="none") * mask).sum() / count
    digit_loss = F.cross_entropy(output[:, DIGITS], digits, ignore_index=-100)
    return focal_loss(output[:, CENTER : CENTER + 1], heat) + digit_loss + size_loss + offset_loss


def segment_batch(scenes: Sequence[Scene]) -> tuple[torch.Tensor, ...]:
    inputs, targets = [], []
    for scene in scenes:
        x, geometry = fit_scene(scene.image)
        inputs.append(x)
        targets.append(class_map_in_input(scene, geometry))
    return torch.from_numpy(np.stack(inputs)), torch.from_numpy(np.stack(targets))


def segment_loss(network: torch.nn.Module, batch: tuple[torch.Tensor, ...]) -> torch.Tensor:
    """Ink or not over every pixel (cross-entropy plus soft Dice, so that the few ink pixels weigh as much as the
    background: IoU counts them so), plus which digit over the ink pixels only (SegmentNet's two factors)."""
    inputs, targets = batch
    log_probabilities = network(inputs)
    log_ink = torch.logsumexp(log_probabilities[:, 1:], dim=1)
    ink = targets > 0
    ink_loss = -torch.where(ink, log_ink, log_probabilities[:, 0]).mean()
    probability = log_ink.exp()
    overlap = (probability * ink).sum()
    dice = 1 - (2 * overlap + 1) / (probability.sum() + ink.sum() + 1)
    which = (log_probabilities[:, 1:] - log_ink[:, None]).gather(1, (targets - 1).clamp_min(0)[:, None])[:, 0]
    return ink_loss + dice - which[ink].mean() if bool(ink.any()) else ink_loss + dice


def segment_start(detector: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """A DetectNet state_dict → the SegmentNet weights it can start: the encoder, and the path that reads which
    digit at 1/4 (lateral → up_quarter, fuse → decode_quarter, head → which with only the head's digit rows)."""
    renamed = {"lateral.": "up_quarter.", "fuse.": "decode_quarter.", "head.": "which.", "encoder.": "encoder."}
    start = {}
    for key, value in detector.items():
        for old, new in renamed.items():
            if key.startswith(old):
                start[new + key[len(old) :]] = value
    start["which.1.weight"] = start["which.1.weight"][DIGITS]
    start["which.1.bias"] = start["which.1.bias"][DIGITS]
    return start


def train(
    network: torch.nn.Module,
    make_batch: Callable[[Sequence[Scene]], tuple[torch.Tensor, ...]],
    loss_of: Callable[[torch.nn.Module, tuple[torch.Tensor, ...]], torch.Tensor],
    rounds: int,
    scenes_per_round: int,
    passes: int,
    seed: int,
    lr: float = 4e-3,
) -> dict[str, float]:
    """AdamW, one-cycle schedule: `rounds` times, compose `scenes_per_round` new scenes, train `passes` over them."""
    steps_per_round = math.ceil(scenes_per_round / BATCH) * passes
    optimiser = torch.optim.AdamW(network.parameters(), lr=lr, weight_decay=1e-4)
    schedule = torch.optim.lr_scheduler.OneCycleLR(optimiser, lr, total_steps=rounds * steps_per_round, pct_start=0.15)
    generator = torch.Generator().manual_seed(seed)
    compose_s = 0.0
    last = 0.0
    for round_index in range(rounds):
        started = time.process_time()
        scenes = scene_set("train", scenes_per_round, seed * 1000 + round_index)
        batches = [make_batch(scenes[i : i + BATCH]) for i in range(0, len(scenes), BATCH)]
        compose_s += time.process_time() - started
        network.train()
        losses = []
        order = torch.randperm(len(batches) * passes, generator=generator) % len(batches)
        for batch in (batches[int(i)] for i in order):
            optimiser.zero_grad()
            loss = loss_of(network, batch)
            loss.backward()
            optimiser.step()
            schedule.step()
            losses.append(float(loss.detach()))
        last = float(np.mean(losses))
        print(f"round {round_index + 1}/{rounds}: loss {last:.4f}", flush=True)
    return {"compose_cpu_s": round(compose_s, 1), "final_loss": round(last, 4)}


def predict(
    model: ImageModel, images: Sequence[Image.Image], options: ModelOptions = ModelOptions()
) -> list[dict[str, Any]]:
    """Results in each image's own pixels, as the service would answer (without its HTTP and batching)."""
    batch = model.preprocess(images, options)
    results = model.postprocess(model.forward(batch.tensor), batch.states(), options)
    return [result.pop("geometry").result_to_original(result) for result in results]


def detect_map(model: ImageModel, scenes: Sequence[Scene], batch: int = BATCH) -> float:
    """mAP@0.5 of a detector on scenes, ranking every box scoring at least MAP_THRESHOLD."""
    options = ModelOptions(score_threshold=MAP_THRESHOLD)
    found = [
        r["detections"]
        for i in range(0, len(scenes), batch)
        for r in predict(model, [s.image for s in scenes[i : i + batch]], options)
    ]
    return mean_average_precision(found, [(s.boxes, s.labels) for s in scenes])


def segment_miou(model: ImageModel, scenes: Sequence[Scene], batch: int = BATCH) -> float:
    """Mean IoU (background and digits) of a segmenter on scenes, masks at each scene's own size."""
    masks = [
        mask_classes(r["mask"])
        for i in range(0, len(scenes), batch)
        for r in predict(model, [s.image for s in scenes[i : i + batch]])
    ]
    return mean_iou(masks, [s.classes for s in scenes])


def _run(
    network: torch.nn.Module,
    output: Path,
    seed: int,
    body: Callable[[], dict[str, Any]],
    score: Callable[[Path], dict[str, float]],
) -> dict[str, Any]:
    """Single-threaded, seeded training; the report with times, the held-out score and the weights' hash."""
    previous_threads = torch.get_num_threads()
    torch.set_num_threads(1)
    torch.manual_seed(seed)
    wall, cpu = time.perf_counter(), time.process_time()
    try:
        report = body()
        data = save_weights(network, output)
        report.update(
            train_wall_s=round(time.perf_counter() - wall, 1), train_cpu_s=round(time.process_time() - cpu, 1)
        )
        report.update(score(output))
        report.update(sha256=hashlib.sha256(data).hexdigest(), bytes=len(data), path=str(output))
        return report
    finally:
        torch.set_num_threads(previous_threads)


def train_digits_detect(
    output: Path,
    rounds: int = 12,
    scenes_per_round: int = 512,
    passes: int = 3,
    seed: int = 0,
    report_scenes: int = 100,
) -> dict[str, Any]:
    """Train DetectNet and save its weights; the report includes mAP@0.5 on held-out scenes."""
    torch.manual_seed(seed)  # the initial weights too
    network = DetectNet()

    def score(path: Path) -> dict[str, float]:
        from ai_service.models.builtin.digits_detect import DigitsDetectModel

        model = DigitsDetectModel(path)
        model.load(torch.device("cpu"))
        return {"held_out_map50": round(detect_map(model, scene_set("test", report_scenes, REPORT_SEED)), 4)}

    return _run(
        network,
        output,
        seed,
        lambda: train(network, detect_batch, detect_loss, rounds, scenes_per_round, passes, seed),
        score,
    )


def train_digits_segment(
    output: Path,
    rounds: int = 15,
    scenes_per_round: int = 512,
    passes: int = 3,
    seed: int = 0,
    report_scenes: int = 100,
    start_from: Path | None = DETECT_WEIGHTS,
) -> dict[str, Any]:
    """Train SegmentNet and save its weights; the report includes mean IoU on held-out scenes.

    It starts from `start_from` (the committed digits-detect weights, which already tell the digits apart; None:
    from scratch; see segment_start), so that its few minutes go to the masks rather than to learning to read."""
    torch.manual_seed(seed)  # the initial weights too
    network = SegmentNet()
    if start_from is not None:
        network.load_state_dict(segment_start(load_weights(DetectNet(), start_from).state_dict()), strict=False)

    def score(path: Path) -> dict[str, float]:
        from ai_service.models.builtin.digits_segment import DigitsSegmentModel

        model = DigitsSegmentModel(path)
        model.load(torch.device("cpu"))
        return {"held_out_mean_iou": round(segment_miou(model, scene_set("test", report_scenes, REPORT_SEED)), 4)}

    return _run(
        network,
        output,
        seed,
        lambda: train(network, segment_batch, segment_loss, rounds, scenes_per_round, passes, seed),
        score,
    )
