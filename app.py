"""WSGI entry point: `gunicorn app:app` in production, `python app.py` for the development server.

Under gunicorn, gunicorn.conf.py's post_fork configures each worker process before this module is imported;
the development server owns its process, so it configures it here, before the app is built.
"""

from ai_service import create_app

if __name__ == "__main__":
    from ai_service.observability.logging import setup_logging
    from ai_service.server.process import configure_process
    from ai_service.settings import load_settings

    settings = load_settings()
    setup_logging(settings)  # before configure_process, so its line lands in the service's log format and file
    configure_process(settings)
    app = create_app()
    host, _, port = settings.server.bind.rpartition(":")
    app.run(host=host, port=int(port), debug=False)
else:
    app = create_app()
