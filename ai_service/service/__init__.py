"""The service layer, free of Flask: what the JSON API, the HTML pages, the CLI and jobs all call.

`runtime` (settings + registry + engine, built once per process), `predict` (its input type in `upload`, free of
torch), `convert`, `describe` (models, system, health, readiness), `lifecycle` (load/unload/offload) and `outputs`
(encoding model outputs).
Functions raise `ai_service.errors.ServiceError`, which `ai_service.http.errors` turns into HTTP.
May import models, engine, imaging, devices, observability, schemas, settings, server.cores; never Flask/werkzeug,
http, api or web.
"""
