"""The inference engine: per-model adaptive batching, back-pressure, deadlines and a fast forward path."""
from ai_service.engine.batcher import Batcher, BatchRecord, DeadlineExceeded, Overloaded, Ticket
from ai_service.engine.engine import Engine, attach_engine, engine_for
from ai_service.engine.options import EngineConfigError, EngineOptions

__all__ = ["Batcher", "BatchRecord", "DeadlineExceeded", "Engine", "EngineConfigError", "EngineOptions",
           "Overloaded", "Ticket", "attach_engine", "engine_for"]
