"""What the digits-detect and digits-segment tests share: held-out scenes, the geometry paths an upload may take
(EXIF rotation, letterboxing, a 4000×3000 JPEG decoded at reduced size) with their ground truth, and the HTTP calls.

Every scene here is composed from held-out digits (scenes.scene_set("test")) with seeds training never uses.
"""

from __future__ import annotations

import io
from dataclasses import dataclass

import numpy as np
from PIL import Image

from ai_service.client import decode_data_url
from ai_service.models.builtin.scenes import Scene, compose_scene, digit_pool, mask_classes, scene_set

#: Seeds of the test sets (training uses seed * 1000 + round with seed 0, the training report 99).
PLAIN_SEED, PATHS_SEED = 4242, 4343
#: EXIF orientation → the transpose that stores an upright picture so that a viewer shows it upright again.
STORED = {3: Image.Transpose.ROTATE_180, 6: Image.Transpose.ROTATE_90, 8: Image.Transpose.ROTATE_270}
BIG = (4000, 3000)


@dataclass(frozen=True)
class Upload:
    """A file to post and what it shows upright, in its own (upright, full-size) pixels."""

    name: str
    data: bytes
    boxes: np.ndarray
    labels: np.ndarray
    classes: np.ndarray


def png(scene: Scene, name: str) -> Upload:
    buffer = io.BytesIO()
    scene.image.save(buffer, "PNG")
    return Upload(name, buffer.getvalue(), scene.boxes, scene.labels, scene.classes)


def plain(count: int) -> list[Upload]:
    """Held-out scenes as PNGs, as composed (any size from 96 to 256 a side, some partially transparent)."""
    return [png(scene, f"scene-{i}.png") for i, scene in enumerate(scene_set("test", count, PLAIN_SEED))]


def _opaque(count: int, seed: int, size: tuple[int, int]) -> list[Scene]:
    digits, labels = digit_pool("test")
    rng = np.random.default_rng([PATHS_SEED, seed])
    return [compose_scene(rng, digits, labels, transparent=False, size=size) for _ in range(count)]


def exif_rotated(count: int) -> list[Upload]:
    """JPEGs whose pixels are stored turned, with the EXIF orientation (3, 6, 8) that turns them upright."""
    uploads = []
    for i, scene in enumerate(_opaque(count, 1, (224, 160))):
        orientation = (6, 8, 3)[i % 3]
        exif = Image.Exif()
        exif[0x0112] = orientation
        buffer = io.BytesIO()
        scene.image.transpose(STORED[orientation]).save(buffer, "JPEG", quality=92, exif=exif)
        uploads.append(
            Upload(f"rotated-{orientation}-{i}.jpg", buffer.getvalue(), scene.boxes, scene.labels, scene.classes)
        )
    return uploads


def letterboxed(count: int) -> list[Upload]:
    """Very wide and very tall scenes, so most of the square model input is padding."""
    wide, tall = _opaque(count - count // 2, 2, (256, 96)), _opaque(count // 2, 3, (96, 256))
    return [png(scene, f"letterboxed-{i}.png") for i, scene in enumerate(wide + tall)]


def big_jpegs(count: int) -> list[Upload]:
    """4000×3000 JPEGs (a 320×240 scene enlarged 12.5×): decoded at 1/8 by the service, answered at full size."""
    uploads = []
    factor = BIG[0] / 320
    for i, scene in enumerate(_opaque(count, 4, (320, 240))):
        buffer = io.BytesIO()
        scene.image.resize(BIG, Image.Resampling.BICUBIC).save(buffer, "JPEG", quality=85)
        classes = np.asarray(Image.fromarray(scene.classes).resize(BIG, Image.Resampling.NEAREST))
        uploads.append(Upload(f"big-{i}.jpg", buffer.getvalue(), scene.boxes * factor, scene.labels, classes))
    return uploads


def predict(client, model: str, uploads: list[Upload], **form) -> list[dict]:
    """POST the uploads to /api/v1/predict in requests of at most 8 files; the results in order."""
    results = []
    for start in range(0, len(uploads), 8):
        files = [(io.BytesIO(u.data), u.name) for u in uploads[start : start + 8]]
        response = client.post(
            "/api/v1/predict", data={"model": model, "file": files, **form}, content_type="multipart/form-data"
        )
        assert response.status_code == 200, response.get_json()
        results += response.get_json()["results"]
    assert all("error" not in result for result in results), [r.get("error") for r in results]
    return results


def mask_image(result: dict) -> Image.Image:
    return Image.open(io.BytesIO(decode_data_url(result["mask"])))


def mask_of(result: dict) -> np.ndarray:
    """The class index of every pixel of a segmentation result's mask."""
    return mask_classes(mask_image(result))
