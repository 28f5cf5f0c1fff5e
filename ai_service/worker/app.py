"""The Celery app for job chunks: one queue, late acknowledgement, redelivery of a lost worker's chunk."""

from __future__ import annotations

from typing import Any

from celery import Celery
from kombu import Queue

from ai_service.settings import Settings

#: The one queue chunks travel on (a broker shared with other Celery apps never mixes their tasks with ours).
QUEUE = "ai_service.chunks"
#: The task's registered name: web processes send it by name, workers run it.
TASK = "ai_service.run_chunk"
#: Most seconds between sweeps that put a dead worker's unacknowledged chunks back on the Redis queue.
RESTORE_INTERVAL_S = 10.0


def transport_options(settings: Settings) -> dict[str, Any]:
    """Redis: hand an unacknowledged chunk to another worker after the visibility timeout, and look for such chunks
    often enough (kombu's default sweep runs every 100 s, far later than a short timeout); AMQP ignores these."""
    timeout = settings.jobs.visibility_timeout_s
    return {
        "visibility_timeout": timeout,
        "unacked_restore_interval": max(1.0, min(RESTORE_INTERVAL_S, timeout / 2)),
        "unacked_restore_throttle": 1,
    }


def make_celery(settings: Settings) -> Celery:
    """The app for `settings.jobs.broker_url` (redis:// or amqp://) with the chunk task registered; connects lazily."""
    from ai_service.worker.tasks import register

    app = Celery("ai_service", broker=settings.jobs.broker_url, set_as_current=False)
    app.conf.update(
        # Job state is in the database: no result backend, no result messages.
        result_backend=None,
        task_ignore_result=True,
        task_serializer="json",
        accept_content=["json"],
        result_accept_content=["json"],
        # A chunk is acknowledged only when run_chunk returned: a worker killed mid-chunk loses nothing.
        task_acks_late=True,
        task_reject_on_worker_lost=True,
        # One chunk reserved per worker process: the others stay on the broker for idle workers.
        worker_prefetch_multiplier=1,
        broker_connection_retry_on_startup=True,
        broker_connection_max_retries=None,
        broker_transport_options=transport_options(settings),
        task_default_queue=QUEUE,
        task_queues=[Queue(QUEUE, routing_key=QUEUE)],
        task_routes={TASK: {"queue": QUEUE, "routing_key": QUEUE}},
        task_default_delivery_mode="persistent",
        task_track_started=False,
        worker_hijack_root_logger=False,
        worker_redirect_stdouts=False,
        enable_utc=True,
    )
    register(app)
    return app
