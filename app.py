"""WSGI entry point: `gunicorn app:app` in production, `python app.py` for the development server."""
from ai_service import create_app

app = create_app()

if __name__ == "__main__":
    settings = app.config["SETTINGS"]
    app.run(host=settings.host, port=settings.port, debug=False)
