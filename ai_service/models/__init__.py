"""Models: the contract, the registry, and the built-in networks.

base (ImageModel, ModelInfo, ModelOptions, Batch: the contract, checked at registration), pytree (the one
walker over outputs and weights), registry (loading, leases, eviction), declarative (models.yaml), plugins,
loaders (safe weight files), tasks (output shaping), catalog (assembly), builtin/.
May import imaging, settings, devices, errors and observability; never Flask/werkzeug, engine, service, http, api, web.
"""
from ai_service.models.base import Batch, ImageModel, ModelContractError, ModelInfo, ModelOptions
from ai_service.models.registry import (
    ModelBusyError,
    ModelLoadError,
    ModelRegistry,
    ModelStateError,
    UnknownModelError,
)

__all__ = ["Batch", "ImageModel", "ModelContractError", "ModelInfo", "ModelOptions", "ModelRegistry", "ModelLoadError",
           "ModelBusyError", "ModelStateError", "UnknownModelError"]
