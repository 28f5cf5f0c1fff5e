"""`ai-service worker`: a Celery worker in this process that runs job chunks, one model copy per worker process.

Its device comes from the same AI_SERVICE_DEVICE / AI_SERVICE_GPUS settings as the web service: with several GPUs
listed and the prefork pool, each child process takes one GPU (by its pool slot, round robin, so a child that
replaces a dead one takes over its GPU) and the children share the CPU cores through the same core budget as
gunicorn's workers.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import MutableSequence
from typing import TYPE_CHECKING, Any

from celery.utils.nodenames import default_nodename, host_format
from loguru import logger

from ai_service.server.placement import worker_count
from ai_service.settings import ConfigError, Settings, load_settings
from ai_service.worker import tasks
from ai_service.worker.app import QUEUE, make_celery

if TYPE_CHECKING:
    from celery import Celery

POOLS = ("prefork", "solo", "threads")
#: Seconds a new prefork child may take to start (importing torch on a busy machine takes several).
CHILD_START_TIMEOUT_S = 60.0


def parse_args(argv: list[str]) -> argparse.Namespace:
    """The worker's options; everything else comes from the AI_SERVICE_* settings."""
    parser = argparse.ArgumentParser(prog="ai-service worker", description="Run bulk job chunks from the broker.")
    parser.add_argument(
        "-c",
        "--concurrency",
        type=int,
        default=0,
        help="chunks run at once: worker processes (prefork, one model copy each) or threads sharing one copy; "
        "0 (default) = AI_SERVICE_WORKERS, the web service's count: one per core, at least one per GPU in use",
    )
    parser.add_argument("-P", "--pool", choices=POOLS, default="prefork", help="how chunks run side by side")
    parser.add_argument("-l", "--loglevel", default="", help="log level (default AI_SERVICE_LOG_LEVEL)")
    parser.add_argument(
        "-n",
        "--hostname",
        default="",
        help="node name, unique per worker; %%h is the host name (default ai_service-<pid>@%%h)",
    )
    parser.add_argument("-Q", "--queues", default=QUEUE, help=f"comma-separated queues to consume (default {QUEUE})")
    parser.add_argument("--home", default="", help="AI_SERVICE_HOME for this worker")
    parser.add_argument(
        "--max-tasks-per-child", type=int, default=0, help="replace a prefork child after this many chunks (0 = never)"
    )
    return parser.parse_args(argv)


def concurrency_for(requested: int, settings: Settings) -> int:
    """0 sizes the pool as AI_SERVICE_WORKERS sizes the web service: a chunk's decode and preprocessing are one
    core's Python whatever the device (bench/results/jobs.md: 2 processes made 1.4-1.6x one on 2 cores)."""
    return requested if requested > 0 else worker_count(settings)


def install_placement(slots: MutableSequence[int], gpus: str) -> None:
    """In each prefork child, before its first chunk: take its pool slot's share of the cores and its GPU."""
    from billiard.process import current_process
    from celery import signals

    from ai_service.server import placement

    def enter_child(**_: Any) -> None:
        slot = getattr(current_process(), "index", None)
        gpu = placement.enter_worker(slots, slot, gpus)
        tasks.prepare_process()  # reads the settings again: enter_worker narrowed AI_SERVICE_GPUS to one GPU
        logger.info("worker process {}: slot {}{}", os.getpid(), slot, f", GPU {gpu}" if gpu is not None else "")

    signals.worker_process_init.connect(enter_child, weak=False)


def install_sweeper(app: Celery, settings: Settings) -> None:
    """Once the worker consumes, a thread of its main process sends lost chunks again while it is idle."""
    from celery import signals
    from celery.worker import state

    from ai_service.worker.orphans import Sweeper

    sweeper = Sweeper(app, settings, lambda: not state.active_requests and not state.reserved_requests)

    def ready(**_: Any) -> None:
        if not sweeper.started:  # worker_ready comes again after every reconnection to the broker
            sweeper.start()

    signals.worker_ready.connect(ready, weak=False)
    signals.worker_shutdown.connect(lambda **_: sweeper.stop(), weak=False)


def install_hooks() -> None:
    """The service's logging instead of Celery's (Celery leaves logging alone when someone handles setup_logging),
    and at shutdown a flushed history and stopped engine in whichever process ran chunks (prefork child or worker)."""
    from celery import signals

    def close(**_: Any) -> None:
        tasks.close_runtime()

    signals.setup_logging.connect(lambda **_: tasks.prepare_logging(), weak=False)
    signals.worker_process_shutdown.connect(close, weak=False)
    signals.worker_shutdown.connect(close, weak=False)


def run_worker(argv: list[str]) -> int:
    """Start a Celery worker for the ai_service app in this process; returns its exit status."""
    args = parse_args(argv)
    overrides: dict[str, Any] = {"home": args.home} if args.home else {}
    if args.loglevel:
        overrides["log_level"] = args.loglevel.upper()
    try:
        settings = load_settings(overrides)
    except ConfigError as error:
        print(f"ai-service worker: {error}", file=sys.stderr)
        return 2
    if not settings.jobs.enabled:
        print("ai-service worker: jobs are off (AI_SERVICE_JOBS=off); there is nothing to run", file=sys.stderr)
        return 2
    if not settings.jobs.broker_url:
        print("ai-service worker: set AI_SERVICE_BROKER_URL (redis://… or amqp://…)", file=sys.stderr)
        return 2
    concurrency = concurrency_for(args.concurrency, settings)
    if args.pool == "prefork":
        overrides["workers"] = concurrency  # torch threads: each process its share of the cores
    tasks.set_overrides(overrides)
    settings = tasks.prepare_logging()
    if args.pool == "prefork":
        from ai_service.server.cores import shared_slots
        from ai_service.service import runtime  # noqa: F401 - imported once here, not again in every child

        install_placement(shared_slots(concurrency), settings.compute.gpus)
    else:
        tasks.prepare_process()  # one process runs every chunk: configure it here
    install_hooks()
    app = make_celery(settings)
    install_sweeper(app, settings)
    app.conf.worker_proc_alive_timeout = CHILD_START_TIMEOUT_S
    hostname = host_format(default_nodename(args.hostname or f"ai_service-{os.getpid()}@%h"))
    logger.info(
        "ai-service worker {}: pool={} concurrency={} queues={} device={} gpus={}",
        hostname,
        args.pool,
        concurrency,
        args.queues,
        settings.compute.device,
        settings.compute.gpus or "-",
    )
    worker = app.Worker(
        hostname=hostname,
        pool_cls=args.pool,
        concurrency=concurrency,
        loglevel=settings.log.level,
        queues=[name.strip() for name in args.queues.split(",") if name.strip()],
        max_tasks_per_child=args.max_tasks_per_child or None,
        without_gossip=True,
        without_mingle=True,
        optimization="fair",
    )
    worker.start()
    return int(worker.exitcode or 0)


if __name__ == "__main__":
    sys.exit(run_worker(sys.argv[1:]))
