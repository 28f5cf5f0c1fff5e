"""HTTP plumbing shared by both blueprints: the runtime accessor (context), error rendering, security, the
request-body deadline, fast multipart parsing, how bodies are read (parsing: encodings, strict JSON), request
inputs, the OpenAPI document, and the probes (/healthz, /readyz, /metrics).

May import Flask/werkzeug, ai_service.errors, .settings, .schemas, .observability and .service (the probes' views;
`service.upload` elsewhere, which has no torch); never models, engine, api or web.
"""
