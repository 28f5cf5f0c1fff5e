"""The process side under gunicorn: the gthread worker, the core budget shared by workers, worker placement
(core slot, GPU), the log relay, and `configure_process()` for process-wide switches.

Imported by gunicorn's master before any app exists: keep imports light (no Flask, no prometheus_client). May
import devices, settings, observability and http.multipart (the werkzeug patch configure_process installs); never
Flask, service, api or web.
"""
