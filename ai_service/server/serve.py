"""`ai-service serve`: gunicorn in this process with the packaged configuration and `create_app()` in each worker.

The same configuration as `gunicorn -c gunicorn.conf.py app:app` in a checkout (both call `gunicorn_config()`),
without a configuration file or an app module on disk, so an installed wheel serves from any directory.
"""

from __future__ import annotations

from typing import Any

from gunicorn.app.base import BaseApplication

from ai_service.server.gunicorn_config import gunicorn_config


class Service(BaseApplication):
    """gunicorn's master for ai_service; SIGHUP reads the settings again (`load_config` runs at every reload)."""

    def load_config(self) -> None:
        for key, value in gunicorn_config().items():
            self.cfg.set(key, value)

    def load(self) -> Any:
        """In each worker after fork (preload_app is off): the WSGI app."""
        from ai_service import create_app

        return create_app()


def serve() -> None:
    """Run until gunicorn's master exits (SIGTERM, SIGINT); exits the process with gunicorn's status."""
    Service().run()
