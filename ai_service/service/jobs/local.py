"""The local executor: `local_workers` threads in each service process take chunks from the database.

Chunks are claimed with one compare-and-set UPDATE (state and heartbeat as read), so several gunicorn workers,
or several machines on one database, share a job without running a chunk twice at once. A running chunk whose
owner stopped reporting (`stale_after_s`), or whose owner is a dead process on this host, is taken over: after a
crash or a restart the service resumes unfinished jobs. Threads exist only while there is work: they start when
this process accepts a job, or at start-up when the database holds unfinished chunks (a restart resumes them), and
they end once no active job has a chunk left to run or to watch (a process with nothing to do polls nothing).
"""

from __future__ import annotations

import atexit
import os
import socket
import threading
import time
from datetime import timedelta
from typing import TYPE_CHECKING, Any

from loguru import logger
from sqlalchemy import Engine, or_, select, update

from ai_service.errors import ServiceError
from ai_service.service.jobs.core import ACTIVE
from ai_service.settings import JobsSettings
from ai_service.storage.schema import Job, JobChunk, utcnow
from ai_service.storage.writer import unreachable

if TYPE_CHECKING:
    from ai_service.service.runtime import Runtime

#: Seconds an idle thread waits before it looks for work again (a submit in this process wakes it at once).
IDLE_POLL_S = 1.0
#: Retry delays after a chunk failed as a whole (overloaded, database down): doubling from the first to the last.
BACKOFF_S = (1.0, 60.0)
#: Candidate chunks read per claim attempt.
CANDIDATES = 16
#: How long close() waits for a thread to hand its chunk back.
CLOSE_TIMEOUT_S = 30.0


def host() -> str:
    return socket.gethostname()[:64]


def gone(pid: int) -> bool:
    """No process of this host has this id any more."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    except PermissionError:
        return False
    return False


class LocalExecutor:
    """Threads that claim and run chunks in this process; `dispatch` only wakes them (the chunks are in the DB)."""

    name = "local"

    def __init__(self, settings: JobsSettings, engine: Engine) -> None:
        #: The jobs section of the settings (local_workers, stale_after_s).
        self.settings = settings
        self.engine = engine
        #: Chunks this process is running now, by owner: (job_id, start, stop).
        self.running: dict[str, tuple[str, int, int]] = {}
        self._runtime: Runtime | None = None
        self._pid = -1
        self._threads: list[threading.Thread] = []
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._claiming = threading.Lock()
        self._beat_thread: threading.Thread | None = None
        self._registered = False
        self._last_log = 0.0

    def start(self, runtime: Runtime) -> None:
        """At start-up (after a fork, in each process): resume unfinished chunks when the database has any."""
        with self._lock:
            self._runtime = runtime
        try:
            waiting = self.has_work()
        except Exception:  # noqa: BLE001 - the database is down: poll until it is back, then decide
            waiting = True
        if waiting:
            self._ensure_threads()

    def dispatch(self, job_id: str, chunks: list[tuple[int, int]]) -> None:
        """The chunks are pending in the database: make sure this process's threads run, and wake them."""
        self._ensure_threads()
        self._wake.set()

    def _ensure_threads(self) -> None:
        """Start the worker threads (and the heartbeat) that are not running in this process."""
        if self._runtime is None or not self.settings.local_workers:
            return
        with self._lock:
            if self._pid != os.getpid():  # after a fork the parent's threads do not exist here
                self._pid, self._stop, self.running, self._threads = os.getpid(), threading.Event(), {}, []
                self._beat_thread = None
            alive = {thread.name for thread in self._threads if thread.is_alive()}
            self._threads = [thread for thread in self._threads if thread.name in alive]
            for number in range(self.settings.local_workers):
                if f"jobs-{number}" not in alive:
                    thread = threading.Thread(target=self._work, args=(number,), name=f"jobs-{number}", daemon=True)
                    self._threads.append(thread)
                    thread.start()
            if self._beat_thread is None or not self._beat_thread.is_alive():
                self._beat_thread = threading.Thread(target=self._beat, name="jobs-heartbeat", daemon=True)
                self._beat_thread.start()
            if not self._registered:
                atexit.register(self.close)
                self._registered = True

    def has_work(self) -> bool:
        """Some active job has a chunk pending or running (running ones are watched: they may need taking over)."""
        unfinished = (
            select(JobChunk.job_id)
            .join(Job, Job.id == JobChunk.job_id)
            .where(Job.status.in_(ACTIVE), JobChunk.state.in_(("pending", "running")))
            .limit(1)
        )
        with self.engine.connect() as connection:
            return connection.execute(unfinished).first() is not None

    def describe(self) -> dict[str, Any]:
        """Threads and the chunks they run, for the system report."""
        return {
            "workers": self.settings.local_workers,
            "running": [{"job": job, "start": start, "stop": stop} for job, start, stop in list(self.running.values())],
        }

    def close(self, timeout: float = CLOSE_TIMEOUT_S) -> None:
        """Stop taking chunks; a chunk in progress is handed back after its current batch."""
        if self._pid != os.getpid():
            return
        self._stop.set()
        self._wake.set()
        deadline = time.monotonic() + timeout
        with self._lock:
            threads = [*self._threads, *([self._beat_thread] if self._beat_thread is not None else [])]
            self._threads, self._beat_thread = [], None
        for thread in threads:
            thread.join(max(0.0, deadline - time.monotonic()))
        if self._registered:
            atexit.unregister(self.close)
            self._registered = False

    def owner(self, number: int | str) -> str:
        """host:pid/executor.thread: which process runs a chunk, and which of its threads."""
        return f"{host()}:{os.getpid()}/{id(self):x}.{number}"

    # -- the threads ---------------------------------------------------------------------------------------

    def _work(self, number: int) -> None:
        from ai_service.service.jobs.run import run_chunk

        owner = self.owner(number)
        delay = BACKOFF_S[0]
        while not self._stop.is_set():
            try:
                claimed = self.claim(owner)
            except Exception as error:  # noqa: BLE001 - the database is down: keep polling
                self._log(f"jobs: cannot look for work ({type(error).__name__}: {str(error).splitlines()[0][:200]})")
                claimed = None
            if claimed is None:
                if self._idle_exit():
                    return
                self._wake.wait(IDLE_POLL_S)
                self._wake.clear()
                continue
            job_id, start, stop = claimed
            try:
                run_chunk(self._runtime, job_id, start, stop, owner, interrupted=self._stop.is_set)
                delay = BACKOFF_S[0]
                continue
            except Exception as error:  # noqa: BLE001 - retried later, by this or another process
                if unreachable(error):
                    self._log(f"jobs: database unreachable while running job {job_id} ({type(error).__name__})")
                else:
                    report = logger if isinstance(error, ServiceError) else logger.opt(exception=error)
                    report.warning("job {}: chunk {} failed ({}); retrying in {:g} s", job_id, start, error, delay)
                self._hand_back(job_id, start)
            finally:
                self.running.pop(owner, None)
            self._stop.wait(delay)  # back off (this thread only) after a failure
            delay = min(delay * 2, BACKOFF_S[1])

    def _idle_exit(self) -> bool:
        """Nothing left to run or watch: this thread ends (under the lock, so a submit now starts a fresh one)."""
        with self._lock:
            try:
                if self.has_work():
                    return False
            except Exception:  # noqa: BLE001 - the database is down: keep polling
                return False
            self._threads = [thread for thread in self._threads if thread is not threading.current_thread()]
            return True

    def orphaned(self, owner: str | None, chunk: tuple[str, int, int]) -> bool:
        """Owned by a dead process of this host, or by a thread of this process that no longer runs it (it failed
        while the database was down and could not hand it back)."""
        where, _, rest = (owner or "").rpartition(":")
        pid = rest.partition("/")[0]
        if where != host() or not pid.isdigit():
            return False
        if int(pid) == os.getpid():  # ours and idle, or another executor's of this process (alive: not orphaned)
            return owner.startswith(self.owner("")) and self.running.get(owner) != chunk  # type: ignore[union-attr]
        return gone(int(pid))

    def claim(self, owner: str) -> tuple[str, int, int] | None:
        """Take one chunk: first one whose owner is silent (stale) or gone, else a pending one (oldest job first);
        it is in `running` when this returns."""
        with self._claiming:  # orphaned() reads `running`: claims of this process's threads take turns
            return self._claim(owner)

    def _claim(self, owner: str) -> tuple[str, int, int] | None:
        now = utcnow()
        cutoff = now - timedelta(seconds=self.settings.stale_after_s)
        columns = (
            JobChunk.job_id,
            JobChunk.start,
            JobChunk.stop,
            JobChunk.state,
            JobChunk.owner,
            JobChunk.heartbeat_at,
        )
        base = select(*columns).join(Job, Job.id == JobChunk.job_id).where(Job.status.in_(ACTIVE))
        order = (Job.created_at, JobChunk.job_id, JobChunk.start)
        orphans = base.where(
            JobChunk.state == "running",
            or_(JobChunk.heartbeat_at < cutoff, JobChunk.owner.startswith(f"{host()}:", autoescape=True)),
        )
        pending = base.where(JobChunk.state == "pending")
        with self.engine.connect() as connection:
            candidates = connection.execute(orphans.order_by(*order).limit(CANDIDATES * 4)).all()
            candidates += connection.execute(pending.order_by(*order).limit(CANDIDATES)).all()
        for chunk in candidates:
            where = [JobChunk.job_id == chunk.job_id, JobChunk.start == chunk.start, JobChunk.state == chunk.state]
            if chunk.state == "running":
                if self.orphaned(chunk.owner, (chunk.job_id, chunk.start, chunk.stop)):
                    where.append(JobChunk.owner == chunk.owner)
                elif chunk.heartbeat_at is not None and chunk.heartbeat_at < cutoff:
                    where.append(JobChunk.heartbeat_at < cutoff)  # stale still, when the update runs
                else:
                    continue  # a live process of this host runs it
            with self.engine.begin() as connection:
                taken = connection.execute(
                    update(JobChunk).where(*where).values(state="running", owner=owner, heartbeat_at=now)
                )
            if taken.rowcount == 1:
                if chunk.state == "running":
                    logger.warning("job {}: chunk {} taken over from {}", chunk.job_id, chunk.start, chunk.owner)
                self.running[owner] = (chunk.job_id, chunk.start, chunk.stop)
                return self.running[owner]
        return None

    def _hand_back(self, job_id: str, start: int) -> None:
        try:
            with self.engine.begin() as connection:
                connection.execute(
                    update(JobChunk)
                    .where(JobChunk.job_id == job_id, JobChunk.start == start, JobChunk.state == "running")
                    .values(state="pending", owner=None)
                )
        except Exception as error:  # noqa: BLE001 - a stale chunk is taken over anyway
            self._log(f"jobs: could not hand chunk {start} of job {job_id} back ({type(error).__name__})")

    def _beat(self) -> None:
        """Keep this process's running chunks fresh while a long batch runs (so they are not taken over)."""
        interval = max(0.2, self.settings.stale_after_s / 4)
        while not self._stop.wait(interval):
            held = list(self.running.items())
            if not held:
                with self._lock:
                    if not any(thread.is_alive() for thread in self._threads):
                        self._beat_thread = None
                        return  # the workers ended: so does the heartbeat (started again with them)
                continue
            try:
                with self.engine.begin() as connection:
                    for owner, (job_id, start, _) in held:
                        connection.execute(
                            update(JobChunk)
                            .where(JobChunk.job_id == job_id, JobChunk.start == start, JobChunk.owner == owner)
                            .values(heartbeat_at=utcnow())
                        )
            except Exception as error:  # noqa: BLE001 - retried at the next beat
                self._log(f"jobs: heartbeat failed ({type(error).__name__})")

    def _log(self, message: str) -> None:
        """A recurring problem, at most once every 10 s."""
        if time.monotonic() - self._last_log >= 10.0:
            self._last_log = time.monotonic()
            logger.warning(message)
