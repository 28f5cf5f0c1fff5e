"""The web process's side of Celery jobs: chunks go to the broker as tasks; workers on any machine run them."""

from __future__ import annotations

from kombu.exceptions import OperationalError as BrokerError
from kombu.utils.url import maybe_sanitize_url
from loguru import logger

from ai_service.errors import ServiceError
from ai_service.settings import Settings
from ai_service.worker.app import QUEUE, TASK, make_celery

#: Tries of one publish when the broker does not answer (kombu waits 0.2 s, then 0.4 s, … between them).
PUBLISH_RETRY = {"max_retries": 3, "interval_start": 0.2, "interval_step": 0.4, "interval_max": 1.0}


class CeleryExecutor:
    """Sends one `ai_service.run_chunk` task per chunk; needs the broker, never a running worker."""

    name = "celery"

    def __init__(self, settings: Settings) -> None:
        if not settings.jobs.broker_url:
            raise ValueError("CeleryExecutor needs settings.jobs.broker_url (AI_SERVICE_BROKER_URL)")
        self.app = make_celery(settings)
        self._where = maybe_sanitize_url(settings.jobs.broker_url)

    def dispatch(self, job_id: str, chunks: list[tuple[int, int]]) -> None:
        """Publish every chunk of a job over one broker connection; ServiceError `unavailable` if the broker is
        unreachable (the chunks stay pending in the database)."""
        try:
            with self.app.producer_or_acquire() as producer:
                for start, stop in chunks:
                    self.app.send_task(
                        TASK,
                        args=(job_id, start, stop),
                        queue=QUEUE,
                        routing_key=QUEUE,
                        producer=producer,
                        retry=True,
                        retry_policy=PUBLISH_RETRY,
                    )
        except (BrokerError, OSError) as error:
            logger.error("job {}: the broker at {} refused its chunks: {!r}", job_id, self._where, error)
            raise ServiceError(
                "unavailable", f"The job broker at {self._where} cannot be reached; try again later.", {"job": job_id}
            ) from error
        logger.info("job {}: {} chunks sent to {} ({})", job_id, len(chunks), QUEUE, self._where)

    def close(self) -> None:
        """Close the broker connections this process opened."""
        self.app.close()
