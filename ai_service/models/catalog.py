"""Assembling the registry from settings: built-ins, the models file, then plugins (first name wins)."""
from __future__ import annotations

import torch
from loguru import logger

from ai_service.settings import ConfigError, Settings
from ai_service.devices import DeviceError, parse_memory_budget
from ai_service.models.builtin import builtin_models
from ai_service.models.declarative import models_file_path, register_declarative
from ai_service.models.plugins import load_directory_plugins, load_entry_point_plugins
from ai_service.models.registry import ModelRegistry

FAILED_LOAD_RETRY_S = 5.0  # a model that failed to load is tried again by requests at most this often


def build_registry(settings: Settings, device: torch.device) -> ModelRegistry:
    """Every model the settings make available, registered (not loaded) on `device`."""
    try:
        budget = parse_memory_budget(settings.models.gpu_memory_budget, device)
    except (DeviceError, ValueError) as exc:
        raise ConfigError(f"setting gpu_memory_budget: {exc}") from None
    registry = ModelRegistry(device, memory_budget=budget, max_loaded=settings.models.max_loaded_models,
                             eviction=settings.models.eviction, warmup=settings.models.warmup,
                             retry_failed_after=FAILED_LOAD_RETRY_S, precision=settings.engine.precision)
    for model in builtin_models():
        registry.register(model, source="builtin")
    models_file = models_file_path(settings.home, settings.models.models_file)
    declared = register_declarative(registry, settings.home, settings.models_dir, models_file)
    plugins = 0
    if settings.models.load_plugins:
        plugins = load_directory_plugins(registry, settings.models_dir) + load_entry_point_plugins(registry)
    failed = [s["name"] for s in registry.statuses() if s["state"] == "failed"]
    logger.info("models: {} registered ({} from {}, {} plugin(s)){}", len(registry.keys()), declared,
                models_file.name if models_file else "no models file", plugins,
                f"; FAILED: {', '.join(failed)}" if failed else "")
    return registry
