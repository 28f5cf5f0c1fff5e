"""HTTP plumbing shared by every blueprint: error rendering, security (keys, limits, headers), the request-body
deadline, fast multipart parsing, and the probes (/healthz, /readyz, /metrics).

May import Flask/werkzeug, `ai_service.errors`, `ai_service.settings` and `ai_service.observability`; never models or engine.
"""
