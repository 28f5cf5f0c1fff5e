"""The service layer, free of Flask: predict, convert, describe models and system.

The JSON API, the HTML pages, the CLI and jobs all call these functions; they raise
`ai_service.errors.ServiceError`, which `ai_service.http.errors` turns into HTTP.
May import models, engine, imaging, devices, observability; never Flask.
"""
