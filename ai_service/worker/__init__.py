"""Celery workers for bulk jobs: the broker app (app), the chunk task (tasks), the web side's dispatcher
(executor), the re-sending of chunks a broker lost (orphans) and `ai-service worker` (main).

A worker process builds the same Runtime as a web process and calls `ai_service.service.jobs.run_chunk`; job state
lives in the database, never in Celery results. May import service, settings, storage, observability, errors and
server (process set-up, GPU placement, the core budget); never Flask/werkzeug, http, api or web.
"""
