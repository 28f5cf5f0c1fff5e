"""The jobs of one process: database engine, job store and executor, opened once beside the history."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol

from sqlalchemy import Engine
from sqlalchemy.exc import SQLAlchemyError

from ai_service.errors import ServiceError
from ai_service.extras import missing_extra
from ai_service.service.jobs.store import JobStore, open_store
from ai_service.settings import Settings
from ai_service.storage.migrate import open_current

if TYPE_CHECKING:
    from ai_service.service.jobs.retention import Retention
    from ai_service.service.runtime import Runtime

#: States of a job whose chunks still run, and states that are final.
ACTIVE = ("queued", "running")
FINISHED = ("succeeded", "failed", "cancelled")


class Executor(Protocol):
    """Who runs a job's chunks: this process's threads (local) or Celery workers anywhere (celery)."""

    #: local or celery, recorded on each job.
    name: str

    def dispatch(self, job_id: str, chunks: list[tuple[int, int]]) -> None: ...

    def close(self) -> None: ...


@dataclass
class Jobs:
    """One per process: where jobs are kept (engine, store) and who runs them (executor)."""

    settings: Settings
    engine: Engine
    store: JobStore
    executor: Executor
    #: Brings the schema up to date before first use, when the database was unreachable at start-up.
    setup: Callable[[], None] | None = None
    #: The hourly clean-up of old jobs and blobs (AI_SERVICE_HISTORY_DAYS), once started; None while days is 0.
    retention: Retention | None = field(default=None, init=False)

    def ready(self) -> None:
        """Run the deferred schema step (raises while the database stays unreachable)."""
        if self.setup is not None:
            self.setup()
            self.setup = None

    def start(self, runtime: Runtime) -> None:
        """Let the executor run chunks with this runtime (the local executor's threads start here, after fork), and
        start the retention thread: here, not in the history's writer, so it runs with the history off too."""
        start = getattr(self.executor, "start", None)
        if start is not None:
            start(runtime)
        if self.settings.history.days:
            if self.retention is None:
                from ai_service.service.jobs.retention import Retention  # it imports this module

                self.retention = Retention(self, self.settings.history.days)
            self.retention.start()

    def describe(self) -> dict[str, Any]:
        """What this process does for jobs, without a database round trip (system report)."""
        describe = getattr(self.executor, "describe", None)
        return {"enabled": True, "executor": self.executor.name, **(describe() if describe is not None else {})}

    def close(self) -> None:
        """Stop the executor (a local chunk in progress is handed back) and retention, release the connections."""
        self.executor.close()
        if self.retention is not None:
            self.retention.close()
        self.engine.dispose()


def open_jobs(settings: Settings) -> Jobs | None:
    """Connect, check the schema, pick the store and the executor (Celery when a broker is set); None when off."""
    if not settings.jobs.enabled:
        return None
    engine, setup = open_current(
        settings.database_url,
        settings.database.pool_size,
        settings.database.migrate,
        "jobs",
        "jobs wait until it is back",
    )
    executor: Executor
    if settings.jobs.broker_url:
        try:
            from ai_service.worker.executor import CeleryExecutor  # Celery only where a broker is configured
        except ModuleNotFoundError as error:
            raise missing_extra(error, "AI_SERVICE_BROKER_URL") from error

        executor = CeleryExecutor(settings)
    else:
        from ai_service.service.jobs.local import LocalExecutor

        executor = LocalExecutor(settings.jobs, engine)
    return Jobs(settings, engine, open_store(settings, engine), executor, setup)


def require(runtime: Runtime) -> Jobs:
    """The runtime's jobs, or the error that says they are off."""
    if runtime.jobs is None:
        raise ServiceError("jobs_disabled", "Bulk jobs are off on this server; set AI_SERVICE_JOBS=on to accept them.")
    return runtime.jobs


@contextmanager
def database(jobs: Jobs) -> Iterator[None]:
    """A database that cannot be reached is a 503 the client can retry, never a 500."""
    try:
        jobs.ready()
        yield
    except SQLAlchemyError as error:
        raise ServiceError(
            "unavailable",
            "The jobs database cannot be reached right now; try again later.",
            {"reason": type(error).__name__},
            headers={"Retry-After": "5"},
        ) from None
