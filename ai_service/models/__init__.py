"""Models: the contract, the registry, and the built-in networks."""
from ai_service.models.base import ImageModel, ModelInfo
from ai_service.models.registry import (
    ModelBusyError,
    ModelLoadError,
    ModelRegistry,
    ModelStateError,
    UnknownModelError,
)

__all__ = ["ImageModel", "ModelInfo", "ModelRegistry", "ModelLoadError", "ModelBusyError", "ModelStateError",
           "UnknownModelError"]
