"""Models that ship with the service and need no downloaded weights (digits, digits-detect|segment, edges, ...).

They use the contract as any plugin would: may import ai_service.models and ai_service.imaging, nothing else of ours.
"""
from __future__ import annotations

from dataclasses import replace

from ai_service.models.base import ImageModel
from ai_service.models.builtin.background import RemoveBackgroundModel
from ai_service.models.builtin.digits import DigitsModel
from ai_service.models.builtin.digits_detect import DigitsDetectModel
from ai_service.models.builtin.digits_segment import DigitsSegmentModel
from ai_service.models.builtin.edges import EdgesModel
from ai_service.models.builtin.make_examples import example_paths
from ai_service.models.builtin.upscale import UpscaleModel


def builtin_models() -> list[ImageModel]:
    """Fresh instances of every built-in model, registered by the app factory, each with its example inputs."""
    models: list[ImageModel] = [DigitsModel(), DigitsDetectModel(), DigitsSegmentModel(), EdgesModel(),
                                UpscaleModel(2), UpscaleModel(4), RemoveBackgroundModel()]
    for model in models:
        model.info = replace(model.info, examples=example_paths(model.info.name))
    return models
