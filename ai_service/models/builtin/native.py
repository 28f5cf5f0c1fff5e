"""Shared plumbing for built-in image-to-image networks that work at the upload's own resolution."""
from __future__ import annotations

from abc import abstractmethod
from typing import Any, NamedTuple, Sequence

import torch
import torch.nn.functional as F
from PIL import Image
from torch import nn

from ai_service.imaging.alpha import ALPHA_MODES
from ai_service.imaging.convert import pil_to_numpy, tensor_to_pil
from ai_service.imaging.errors import ImageTooLargeError
from ai_service.models.base import Batch, ImageModel, ModelInfo, ModelOptions


def native_info(name: str, description: str, version: str = "1.0") -> ModelInfo:
    """Metadata of a NativeResolutionModel: fed RGBA at the upload's own size, it always returns an image."""
    return ModelInfo(name=name, version=version, task="image-to-image", input_size=None, input_mode="RGBA",
                     description=description)


class ImageShape(NamedTuple):
    """Per image: its own size (the batch is padded to the largest) and mode (the output keeps its family)."""

    width: int
    height: int
    mode: str


class NativeResolutionModel(ImageModel[ImageShape]):
    """Images go in as RGBA floats padded (edge-replicated) to a common size; each output is cropped back.

    Subclasses build a fixed-weight `nn.Module` mapping (N, 4, H, W) in [0, 1] to (N, C, H*scale, W*scale)
    in [0, 1] and say how its channels become an image of the input's mode family.
    """

    scale = 1
    max_output_pixels = 24_000_000
    max_batch_size = 1

    @property
    def max_input_pixels(self) -> int:
        """The largest single input this model takes: its output limit divided by the enlargement."""
        return self.max_output_pixels // self.scale ** 2

    @abstractmethod
    def build(self) -> nn.Module:
        """The network, with its fixed kernels created here (so unload really drops them)."""

    @abstractmethod
    def output_image(self, output: torch.Tensor, mode: str) -> Image.Image:
        """(C, h, w) uint8 output → the result image for an input of `mode`."""

    def load(self, device: torch.device) -> None:
        self.network = self.build().to(device).eval()
        self.device = device

    def decode_size(self) -> tuple[int, int] | None:
        return None

    def preprocess(self, images: Sequence[Image.Image], options: ModelOptions) -> Batch[ImageShape]:
        out_pixels = sum(image.width * image.height for image in images) * self.scale ** 2
        if out_pixels > self.max_output_pixels:
            raise ImageTooLargeError(self.too_large_message(images, out_pixels),
                                     limit=self.max_output_pixels, requested=out_pixels)
        width, height = max(image.width for image in images), max(image.height for image in images)
        tensors = []
        for image in images:
            rgba = torch.from_numpy(pil_to_numpy(image.convert("RGBA")).copy()).to(self.device)
            chw = rgba.permute(2, 0, 1).float().div_(255.0)
            pad = (0, width - image.width, 0, height - image.height)
            tensors.append(F.pad(chw[None], pad, mode="replicate")[0] if any(pad) else chw)
        return Batch(torch.stack(tensors), [ImageShape(image.width, image.height, image.mode) for image in images])

    def too_large_message(self, images: Sequence[Image.Image], out_pixels: int) -> str:
        """Why the output would be too large, in megapixels, with what to send instead (one image or several)."""
        limit = self.max_output_pixels / 1e6
        if len(images) == 1:
            image = images[0]
            made = f"{image.width}×{image.height} ({image.width * image.height / 1e6:.1f} megapixels)"
            largest = f" (×{self.scale} per side: an input of at most {limit / self.scale ** 2:.1f} megapixels)" \
                if self.scale > 1 else ""
            return (f"{self.info.name} would turn this {made} image into {out_pixels / 1e6:.1f} megapixels; "
                    f"it makes at most {limit:.1f} megapixels per image{largest}. Send a smaller image.")
        return (f"{self.info.name} would produce {out_pixels / 1e6:.1f} megapixels from these {len(images)} images; it "
                f"makes at most {limit:.1f} megapixels per request. Send fewer or smaller images.")

    def forward(self, batch: torch.Tensor) -> torch.Tensor:
        """One image at a time (peak memory of one image), quantised to uint8 on the device."""
        assert self.network is not None, f"model {self.info.name} is not loaded"
        with torch.inference_mode():
            return torch.cat([self.network(batch[i:i + 1]).clamp_(0, 1).mul_(255).round_().to(torch.uint8)
                              for i in range(batch.shape[0])])

    def postprocess(self, outputs: torch.Tensor, items: Sequence[ImageShape], options: ModelOptions
                    ) -> list[dict[str, Any]]:
        """Crop each output back from the padded batch size to its own image's size times the scale."""
        return [{"image": self.output_image(output[:, :item.height * self.scale, :item.width * self.scale], item.mode)}
                for output, item in zip(outputs, items)]


def as_input_family(rgba: torch.Tensor, mode: str) -> Image.Image:
    """(4, h, w) uint8 RGBA → an image in the input's family: L/LA stay gray, opaque inputs lose alpha."""
    image = tensor_to_pil(rgba if mode in ALPHA_MODES else rgba[:3])
    if mode in ("L", "LA"):
        return image.convert("LA" if mode == "LA" else "L")
    return image
