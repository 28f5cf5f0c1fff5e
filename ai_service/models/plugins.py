"""Plugins: Python files in AI_SERVICE_HOME/models/ and installed packages with an `ai_service.models` entry point.

A plugin either defines `register(registry)` or defines ImageModel subclasses (with a class-level `info`
and a no-argument constructor), which are checked, instantiated and registered; a class other classes of
the plugin subclass is a shared base, not a model. A plugin that fails (an import error, a model class
missing a hook or `info`, a duplicate) is logged with its traceback and listed as failed, with the code
to add; the service starts anyway.
"""
from __future__ import annotations

import importlib.util
import inspect
import sys
import traceback
from importlib import metadata
from pathlib import Path
from types import ModuleType
from typing import Any

from loguru import logger

from ai_service.models.base import ImageModel, ModelInfo, check_contract
from ai_service.models.registry import ModelRegistry

ENTRY_POINT_GROUP = "ai_service.models"
MODULE_PREFIX = "ai_service_plugins."


def load_directory_plugins(registry: ModelRegistry, folder: Path) -> int:
    """Import every `*.py` in `folder` (not starting with '_' or '.'), in name order; returns how many worked."""
    if not folder.is_dir():
        return 0
    loaded = 0
    for path in sorted(folder.glob("*.py")):
        if path.name.startswith(("_", ".")):
            continue
        source = f"plugin {path.name}"
        module_name = MODULE_PREFIX + path.stem.replace("-", "_").replace(".", "_")
        try:
            module = _import_file(module_name, path)
            with registry.registering_from(source):
                _register_from(module, registry)
            loaded += 1
        except Exception as error:  # a plugin may raise anything; it must never stop the service
            _record_failure(registry, path.stem, source, error)
    return loaded


def load_entry_point_plugins(registry: ModelRegistry) -> int:
    """Load installed packages advertising the `ai_service.models` entry point group."""
    loaded = 0
    for entry_point in metadata.entry_points(group=ENTRY_POINT_GROUP):
        source = f"entry point {entry_point.name} ({entry_point.value})"
        try:
            target = entry_point.load()
            with registry.registering_from(source):
                _register_from(target, registry)
            loaded += 1
        except Exception as error:  # same contract as file plugins: log, list as failed, carry on
            _record_failure(registry, entry_point.name, source, error)
    return loaded


def _import_file(module_name: str, path: Path) -> ModuleType:
    """Import a file as a fresh module (re-importing replaces an earlier copy); remove it again on failure."""
    spec = importlib.util.spec_from_file_location(module_name, path)
    if spec is None or spec.loader is None:
        raise ImportError(f"cannot import {path}")
    module = importlib.util.module_from_spec(spec)
    sys.modules[module_name] = module
    try:
        spec.loader.exec_module(module)
    except BaseException:
        sys.modules.pop(module_name, None)
        raise
    return module


def _register_from(target: Any, registry: ModelRegistry) -> None:
    """Register what a plugin offers: a register() hook, model classes, or a model instance."""
    if isinstance(target, ModuleType):
        hook = getattr(target, "register", None)
        if callable(hook):
            hook(registry)
            return
        classes = _model_classes(target)
        if not classes:
            raise ValueError(f"{target.__name__} defines neither register(registry) nor an ImageModel subclass "
                             "with a class-level `info = ModelInfo(...)`")
        for cls in classes:  # every class checked before any is registered: a plugin works whole or not at all
            check_contract(cls)
        for cls in classes:
            registry.register(cls())
    elif inspect.isclass(target) and issubclass(target, ImageModel):
        check_contract(target)
        registry.register(target())
    elif isinstance(target, ImageModel):
        registry.register(target)
    elif callable(target):
        target(registry)
    else:
        raise TypeError(f"entry point gives {type(target).__name__}; expected a module, a register(registry) "
                        "function, an ImageModel subclass or instance")


def _model_classes(module: ModuleType) -> list[type[ImageModel]]:
    """The module's own ImageModel subclasses; an incomplete one that another of them extends is a shared base."""
    own = [obj for obj in vars(module).values()
           if inspect.isclass(obj) and obj.__module__ == module.__name__ and issubclass(obj, ImageModel)]

    def shared_base(cls: type) -> bool:
        incomplete = inspect.isabstract(cls) or not isinstance(getattr(cls, "info", None), ModelInfo)
        return incomplete and any(other is not cls and issubclass(other, cls) for other in own)

    return [cls for cls in own if not shared_base(cls)]


def _record_failure(registry: ModelRegistry, name: str, source: str, error: BaseException) -> None:
    details = "".join(traceback.format_exception(error))
    logger.error("{} failed; it is listed as failed and the service starts without it:\n{}", source, details)
    registry.register_failure(name, source, "".join(traceback.format_exception_only(error)).strip())
