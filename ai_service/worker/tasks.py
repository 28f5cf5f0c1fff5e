"""The chunk task: each worker process builds its Runtime once and runs chunks through the service layer."""

from __future__ import annotations

import os
import threading
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from loguru import logger

from ai_service.settings import Settings, load_settings
from ai_service.worker.app import TASK

if TYPE_CHECKING:
    from celery import Celery, Task

    from ai_service.service.runtime import Runtime

#: Tries of one chunk before the task gives up (the backoff caps at MAX_BACKOFF_S: about half an hour in all, for a
#: database that is down). run_chunk itself fails the job after its own MAX_ATTEMPTS runs that reached the database,
#: and settles per-item and permanent errors without raising.
MAX_RETRIES = 30
MAX_BACKOFF_S = 60.0

_lock = threading.Lock()
_overrides: dict[str, Any] = {}
_prepared_pid: int | None = None
_runtime: tuple[int, Runtime] | None = None


def set_overrides(overrides: Mapping[str, Any]) -> None:
    """Settings the worker's command line fixes (home, log level, processes) for every process it starts."""
    _overrides.clear()
    _overrides.update(overrides)


def worker_settings() -> Settings:
    """This process's settings, read again after fork (a pinned child sees only its GPU)."""
    return load_settings(_overrides)


def prepare_logging() -> Settings:
    """The service's loguru set-up (Celery's own records are routed into it); idempotent."""
    from ai_service.observability.logging import setup_logging

    settings = worker_settings()
    settings.ensure_dirs()
    setup_logging(settings)
    return settings


def prepare_process() -> Settings:
    """Logging and the process switches, once per process and before CUDA starts (a prefork child: after its GPU
    is pinned)."""
    global _prepared_pid
    from ai_service.server.process import configure_process

    settings = prepare_logging()
    if _prepared_pid != os.getpid():
        configure_process(settings)
        _prepared_pid = os.getpid()
    return settings


def worker_runtime() -> Runtime:
    """The Runtime of this process: built on its first chunk (models load once per process, then stay)."""
    global _runtime
    with _lock:
        if _runtime is None or _runtime[0] != os.getpid():
            from ai_service.service.runtime import build_runtime

            settings = prepare_process()
            runtime = build_runtime(settings)
            runtime.registry.preload(settings.models.preload)
            logger.info("worker runtime ready: device={} models={}", runtime.device, runtime.registry.names())
            _runtime = (os.getpid(), runtime)
        return _runtime[1]


def close_runtime() -> None:
    """Flush and stop this process's Runtime (worker shutdown); a forked copy is left to its owner."""
    global _runtime
    with _lock:
        held, _runtime = _runtime, None
    if held is not None and held[0] == os.getpid():
        held[1].close()


def backoff_s(retries: int) -> float:
    """Seconds before the next try of a failed chunk: 2, 4, 8, … up to MAX_BACKOFF_S."""
    return min(MAX_BACKOFF_S, 2.0 ** (retries + 1))


def run_chunk(task: Task, job_id: str, start: int, stop: int) -> None:
    """Run items [start, stop) of a job; a whole-chunk failure (model not loadable yet, overloaded, database
    unreachable) is tried again later with backoff, up to MAX_RETRIES times."""
    from ai_service.observability.logging import request_id_var
    from ai_service.service import jobs

    owner = f"{task.request.hostname or 'celery'}:{os.getpid()}"
    token = request_id_var.set(job_id)
    try:
        jobs.run_chunk(worker_runtime(), job_id, start, stop, owner)
    except Exception as error:  # noqa: BLE001 - run_chunk raises only what is worth another try
        retries = task.request.retries
        if retries >= MAX_RETRIES:
            logger.error("job {} chunk {}-{} given up after {} tries: {!r}", job_id, start, stop, retries + 1, error)
            raise
        delay = backoff_s(retries)
        logger.warning("job {} chunk {}-{} failed ({!r}); trying again in {:g}s", job_id, start, stop, error, delay)
        raise task.retry(exc=error, countdown=delay, max_retries=MAX_RETRIES) from error
    finally:
        request_id_var.reset(token)


def register(app: Celery) -> Task:
    """Register the chunk task on `app` under its fixed name (web processes send it by that name)."""
    return app.task(name=TASK, bind=True, acks_late=True, reject_on_worker_lost=True, max_retries=MAX_RETRIES)(
        run_chunk
    )
