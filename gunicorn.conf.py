"""`gunicorn -c gunicorn.conf.py app:app`: the production configuration that ships in the package
(ai_service/server/gunicorn_config.py, which `ai-service serve` runs too), read again at every reload."""

from ai_service.server.gunicorn_config import gunicorn_config

globals().update(gunicorn_config())
