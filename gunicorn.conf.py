"""gunicorn settings, read from the same AI_SERVICE_* settings as the app (see README for the table).

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
- Sizing (README "Performance / batching"): AI_SERVICE_WORKERS=0 means one worker per core on CPU,
  one per listed GPU with AI_SERVICE_GPUS. Workers share the cores through a budget in shared memory
  (ai_service/server/cores.py): a lone forward takes every idle core, under load each forward gets
  its share, so workers × torch threads never exceeds the cores. With several GPUs each worker is
  pinned to one GPU through CUDA_VISIBLE_DEVICES (ai_service/server/placement.py).
"""

from __future__ import annotations

import logging
import math
import os
import shutil

from gunicorn.glogging import Logger

from ai_service.server.process import configure_process
from ai_service.settings import load_settings

_settings = load_settings()
if _settings.metrics:
    # Before any worker imports prometheus_client: every worker writes its samples to this folder.
    os.environ["PROMETHEUS_MULTIPROC_DIR"] = str(_settings.data_dir / "prometheus")

from ai_service.observability.logging import InterceptHandler, setup_logging  # noqa: E402
from ai_service.server import placement  # noqa: E402 - light: no prometheus_client in the master
from ai_service.server.cores import shared_slots  # noqa: E402

bind = _settings.server.bind
workers = _settings.server.workers or placement.default_workers(_settings.compute.gpus, _settings.compute.device)
threads = _settings.server.threads
worker_class = "ai_service.server.worker.ThreadWorker"
# A worker busy with the longest allowed inference is not hung: the request deadline answers 504 first.
timeout = max(_settings.server.timeout, math.ceil(_settings.engine.request_timeout_s) + 10)
graceful_timeout = timeout
max_requests = _settings.server.max_requests
max_requests_jitter = _settings.server.max_requests_jitter
keepalive = _settings.server.keepalive
preload_app = False
accesslog = None
errorlog = "-"
loglevel = _settings.log.level.lower()
limit_request_line = 8190
forwarded_allow_ips = "127.0.0.1"


class LoguruLogger(Logger):
    """gunicorn's logger with its handlers replaced by the loguru intercept."""

    def setup(self, cfg) -> None:
        super().setup(cfg)
        setup_logging(_settings)
        for log in (self.error_log, self.access_log):
            log.handlers = [InterceptHandler()]
            log.propagate = False
            log.setLevel(logging.getLevelName(_settings.log.level.upper()))


logger_class = LoguruLogger


# Shared by every worker (created before the first fork): cores held by each worker's forwards.
_core_slots = shared_slots(workers)


def on_starting(server) -> None:
    """Empty the metrics folder: samples of a previous run would be added to this one's."""
    folder = os.environ.get("PROMETHEUS_MULTIPROC_DIR")
    if folder:
        shutil.rmtree(folder, ignore_errors=True)
        os.makedirs(folder, exist_ok=True)


def pre_fork(server, worker) -> None:
    """Give the new worker the lowest slot (and so GPU) that no live worker holds."""
    worker.ai_slot = placement.free_slot((getattr(w, "ai_slot", None) for w in server.WORKERS.values()), workers)


def post_fork(server, worker) -> None:
    """In the worker, before the app is built: join the core budget, pin this worker's GPU, configure the process."""
    gpu = placement.enter_worker(_core_slots, worker.ai_slot, _settings.compute.gpus)
    server.log.info(
        "worker %s: core budget slot %s%s",
        worker.pid,
        worker.ai_slot,
        f", pinned to GPU {gpu}" if gpu is not None else "",
    )
    configure_process(load_settings())  # read again: enter_worker narrowed AI_SERVICE_GPUS to the pinned GPU


def child_exit(server, worker) -> None:
    """A dead worker holds no cores and reports no gauges: clear its slot and its live metrics."""
    if getattr(worker, "ai_slot", None) is not None:
        _core_slots[worker.ai_slot] = 0
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        from prometheus_client import multiprocess

        multiprocess.mark_process_dead(worker.pid)
