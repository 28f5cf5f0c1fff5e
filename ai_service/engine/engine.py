"""The engine of one process: a batcher per loaded model, created on first use, replaced on reload."""
from __future__ import annotations

import sys
import threading
import weakref
from typing import Any

from ai_service.engine.batcher import Batcher
from ai_service.engine.options import EngineOptions
from ai_service.engine.runner import ForwardRunner
from ai_service.models.base import ImageModel


class Engine:
    """Holds one Batcher per model name; a model object replaced in the registry gets a fresh one."""

    def __init__(self, options: EngineOptions | None = None) -> None:
        self.options = options or EngineOptions()
        self._batchers: dict[str, tuple[ImageModel, Batcher]] = {}
        self._lock = threading.Lock()

    def batcher(self, model: ImageModel) -> Batcher:
        """The batcher serving `model` (must be loaded: its device decides the default batch size)."""
        name = getattr(model.info, "key", model.info.name)
        with self._lock:
            current = self._batchers.get(name)
            if current is not None and current[0] is model:
                return current[1]
            max_batch_size = self.options.batch_size_for(model, model.device)
            runner = ForwardRunner(model, self.options, max_batch_size)
            batcher = Batcher(name, runner, max_batch_size=max_batch_size,
                              max_delay_ms=self.options.batch_delay_for(model), max_queue=self.options.max_queue,
                              idle_exit_s=self.options.idle_exit_s, label=model.info.name, inline=runner.runs_inline)
            runner.under_load = lambda: batcher.pending > 0
            self._batchers[name] = (model, batcher)
        if current is not None:
            current[1].close(timeout=0)
        return batcher

    def stats(self) -> dict[str, dict[str, Any]]:
        """Queue depth and batch sizes per model, for health pages and benchmarks."""
        with self._lock:
            return {name: batcher.stats() for name, (_, batcher) in sorted(self._batchers.items())}

    def close(self) -> None:
        with self._lock:
            batchers = [batcher for _, batcher in self._batchers.values()]
            self._batchers.clear()
        for batcher in batchers:
            batcher.close()


#: Python's default GIL switch interval is 5 ms: an eager forward re-takes the GIL between ops (~60 for
#: resnet18), so while request threads run Python (parsing, decoding) each re-take could wait 5 ms and a
#: 30 ms forward took seconds. 0.5 ms measured ~6× faster forwards under load at no cost to the others.
GIL_SWITCH_INTERVAL_S = 0.0005

_engines: "weakref.WeakKeyDictionary[Any, Engine]" = weakref.WeakKeyDictionary()
_engines_lock = threading.Lock()


def attach_engine(registry: Any, options: EngineOptions) -> Engine:
    """Give a registry (one app) its engine; called by the app factory with the settings' options."""
    sys.setswitchinterval(min(sys.getswitchinterval(), GIL_SWITCH_INTERVAL_S))
    engine = Engine(options)
    with _engines_lock:
        previous = _engines.get(registry)
        _engines[registry] = engine
    if previous is not None:
        previous.close()
    return engine


def engine_for(registry: Any) -> Engine:
    """The registry's engine (default options when none was attached, e.g. a registry built by hand)."""
    with _engines_lock:
        engine = _engines.get(registry)
        if engine is None:
            engine = _engines[registry] = Engine()
        return engine
