"""What the service keeps: the SQL database (engine, tables, migrations) and the content-addressed image store.

Shared by every stored feature (prediction history now, bulk jobs next). Flask-free and model-free: may import
ai_service.settings, .errors and .observability; never Flask/werkzeug, http, api, web, models, engine or service.
"""
