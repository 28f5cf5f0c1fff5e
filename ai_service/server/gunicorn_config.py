"""The production gunicorn configuration, shipped in the package: `ai-service serve` (ai_service.server.serve) and
the repository's gunicorn.conf.py both take it from `gunicorn_config()`, read afresh from the settings at every
(re)load, so `make run`, a wheel's `ai-service serve` and a SIGHUP reload are one configuration.

Choices:
- worker_class: gunicorn's threaded worker ("gthread", ai_service/server/worker.py subclasses it so a
  thread that answered a keep-alive request serves that client's next one itself): request threads in
  one process share the loaded models (one copy of the weights per worker) and, with the batcher, can
  be batched together; a sync worker would serve one request at a time per copy of the model.
- preload_app False: each worker creates the app after fork, so CUDA is initialized in the worker
  (CUDA does not survive fork) and a crash while loading cannot take the master down.
- Access logging is done by the app (one structured line with the request id), so gunicorn's own
  access log is off; gunicorn's error log goes through loguru like everything else.
- Metrics: PROMETHEUS_MULTIPROC_DIR (AI_SERVICE_HOME/var/prometheus) is set before prometheus_client
  is imported, emptied at start and cleared of a dead worker's gauges, so /metrics adds up workers.
- Process-wide switches (GPU visibility, torch threads, GIL switch interval, multipart parser) are set
  in each worker by post_fork through ai_service.server.process.configure_process, not by the app.
- Lifecycle: the worker timeout outlasts AI_SERVICE_REQUEST_TIMEOUT_S, and workers are recycled
  after AI_SERVICE_MAX_REQUESTS (+ jitter) requests.
- Control socket: one per home (var/gunicorn.ctl), not gunicorn's per-user default that every instance
  shares (a second instance would take the first one's over; a read-only home cannot create it).
- Sizing (docs/performance/tuning.md): AI_SERVICE_WORKERS=0, the default, means one worker per core
  (affinity and cgroup quota), on GPU boxes too (a worker's Python runs on one core whatever the device), and
  never fewer than the GPUs in use. Workers share the cores through a budget in shared memory
  (ai_service/server/cores.py): a lone forward takes every idle core, under load each forward gets its share,
  so workers × torch threads never exceeds the cores. With several GPUs the workers take them round robin:
  through CUDA_VISIBLE_DEVICES when listed, else as cuda:N (ai_service/server/placement.py).
"""

from __future__ import annotations

import gc
import logging
import math
import os
import shutil
from pathlib import Path
from typing import Any

from gunicorn.glogging import Logger

from ai_service.server.process import configure_process
from ai_service.settings import Settings, load_settings

#: The longest path a Unix socket address holds (sun_path is 108 bytes with its terminating NUL).
UNIX_PATH_MAX = 107


def control_socket(settings: Settings) -> Path | None:
    """This home's control socket, or None (switched off, or a home too deep for a socket address)."""
    path = settings.data_dir / "gunicorn.ctl"
    if not settings.server.control_socket or len(os.fsencode(path)) > UNIX_PATH_MAX:
        return None
    return path


class LoguruLogger(Logger):
    """gunicorn's logger with its handlers replaced by the loguru intercept."""

    def setup(self, cfg) -> None:
        from ai_service.observability.logging import InterceptHandler, setup_logging

        super().setup(cfg)
        settings = load_settings()
        setup_logging(settings)
        for log in (self.error_log, self.access_log):
            log.handlers = [InterceptHandler()]
            log.propagate = False
            log.setLevel(logging.getLevelName(settings.log.level.upper()))


def gunicorn_config(settings: Settings | None = None) -> dict[str, Any]:
    """gunicorn's settings and server hooks, from the service's settings (read now when not given)."""
    settings = settings or load_settings()
    settings.ensure_dirs()
    if settings.metrics:
        # Before any worker imports prometheus_client: every worker writes its samples to this folder.
        os.environ["PROMETHEUS_MULTIPROC_DIR"] = str(settings.data_dir / "prometheus")

    from ai_service.server import placement  # light: no prometheus_client in the master
    from ai_service.server.cores import shared_slots

    gpu_count = 0 if settings.compute.gpus.strip() else placement.visible_gpus(settings.compute.device)
    workers = placement.worker_count(settings, gpu_count)
    socket_path = control_socket(settings)
    # Shared by every worker (created before the first fork): cores held by each worker's forwards.
    core_slots = shared_slots(workers)

    def on_starting(server) -> None:
        """Empty the metrics folder (samples of a previous run would be added to this one's); say where control is."""
        folder = os.environ.get("PROMETHEUS_MULTIPROC_DIR")
        if folder:
            shutil.rmtree(folder, ignore_errors=True)
            os.makedirs(folder, exist_ok=True)
        if socket_path is None and settings.server.control_socket:
            server.log.warning("control socket off: %s is too long for a socket address", settings.data_dir)

    def pre_fork(server, worker) -> None:
        """Give the new worker the lowest slot (and so GPU) that no live worker holds."""
        worker.ai_slot = placement.free_slot((getattr(w, "ai_slot", None) for w in server.WORKERS.values()), workers)

    def post_fork(server, worker) -> None:
        """In the worker, before the app is built: join the core budget, pin this worker's GPU, configure it."""
        gpu = placement.enter_worker(
            core_slots, worker.ai_slot, settings.compute.gpus, settings.compute.device, gpu_count
        )
        server.log.info(
            "worker %s: core budget slot %s%s",
            worker.pid,
            worker.ai_slot,
            f", pinned to GPU {gpu}" if gpu is not None else "",
        )
        # Read again (enter_worker narrowed AI_SERVICE_GPUS or AI_SERVICE_DEVICE to the pinned GPU); torch threads
        # start at this worker's share of the cores.
        configure_process(load_settings(), workers)

    def post_worker_init(worker) -> None:
        """The app is built: move every object that exists now (modules, app, models loaded at start) out of the
        garbage collector's reach, so a full collection walks only what requests create, not the whole heap."""
        gc.collect()
        gc.freeze()

    def child_exit(server, worker) -> None:
        """A dead worker holds no cores and reports no gauges: clear its slot and its live metrics."""
        if getattr(worker, "ai_slot", None) is not None:
            core_slots[worker.ai_slot] = 0
        if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
            from prometheus_client import multiprocess

            multiprocess.mark_process_dead(worker.pid)

    return {
        "bind": settings.server.bind,
        "workers": workers,
        "threads": settings.server.threads,
        "worker_class": "ai_service.server.worker.ThreadWorker",
        # A worker busy with the longest allowed inference is not hung: the request deadline answers 504 first.
        "timeout": (timeout := max(settings.server.timeout, math.ceil(settings.engine.request_timeout_s) + 10)),
        "graceful_timeout": timeout,
        "max_requests": settings.server.max_requests,
        "max_requests_jitter": settings.server.max_requests_jitter,
        "keepalive": settings.server.keepalive,
        "preload_app": False,
        "accesslog": None,
        "errorlog": "-",
        "loglevel": settings.log.level.lower(),
        "limit_request_line": 8190,
        "forwarded_allow_ips": "127.0.0.1",
        **({"control_socket": str(socket_path)} if socket_path else {}),
        "control_socket_disable": socket_path is None,
        "logger_class": LoguruLogger,
        "on_starting": on_starting,
        "pre_fork": pre_fork,
        "post_fork": post_fork,
        "post_worker_init": post_worker_init,
        "child_exit": child_exit,
    }
