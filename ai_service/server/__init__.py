"""The process side under gunicorn: the gthread worker, the core budget shared by workers, worker placement
(core slot, GPU), the log relay, and `configure_process()` for process-wide switches.

Imported by gunicorn's master before any app exists: keep imports light (no Flask, no prometheus_client).
"""
