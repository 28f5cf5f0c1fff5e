"""The service layer, free of Flask: what the JSON API, the HTML pages, the CLI and jobs all call.

`runtime` (settings + registry + engine + history, built once per process), `predict` (its input types in `upload`,
free of torch), `convert`, `describe` (models, system, health, readiness), `lifecycle` (load/unload/offload),
`outputs` (encoding model outputs) and `history` (recording predictions, reading and exporting them; the tables
and the writer are in ai_service.storage).
Functions raise `ai_service.errors.ServiceError`, which `ai_service.http.errors` turns into HTTP.
May import models, engine, imaging, storage, devices, observability, schemas, settings, server.cores; never
Flask/werkzeug, http, api or web.
"""
