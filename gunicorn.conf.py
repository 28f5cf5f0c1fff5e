"""gunicorn settings, read from the same AI_SERVICE_* settings as the app (see README for the table).

Choices:
- worker_class "gthread": request threads in one process share the loaded models (one copy of the
  weights per worker) and, with the batcher, can be batched together; a sync worker would serve one
  request at a time per copy of the model.
- preload_app False: each worker creates the app after fork, so CUDA is initialised in the worker
  (CUDA does not survive fork) and a crash while loading cannot take the master down.
- Access logging is done by the app (one structured line with the request id), so gunicorn's own
  access log is off; gunicorn's error log goes through loguru like everything else.
"""
from __future__ import annotations

import logging

from gunicorn.glogging import Logger

from ai_service.config import load_settings
from ai_service.logging import InterceptHandler, setup_logging

_settings = load_settings()

bind = _settings.bind
workers = _settings.workers
threads = _settings.threads
worker_class = "gthread"
timeout = _settings.timeout
graceful_timeout = _settings.timeout
keepalive = 5
preload_app = False
accesslog = None
errorlog = "-"
loglevel = _settings.log_level.lower()
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
            log.setLevel(logging.getLevelName(_settings.log_level.upper()))


logger_class = LoguruLogger
