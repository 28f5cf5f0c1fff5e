"""ai_service: PyTorch image models behind an upload page and a JSON API."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

__version__ = "0.1.0"


def create_app(overrides: Mapping[str, Any] | None = None):
    """Application factory: settings → logging → runtime (device, registry, engine) → blueprints."""
    from loguru import logger

    from ai_service import api, web
    from ai_service.http import context, probes
    from ai_service.http.errors import register_error_handlers
    from ai_service.http.flask_app import ServiceFlask
    from ai_service.http.parsing import install_parsing
    from ai_service.http.security import install_security
    from ai_service.observability.logging import install_request_logging, setup_logging
    from ai_service.observability.metrics import install_request_metrics
    from ai_service.service.runtime import build_runtime
    from ai_service.settings import ASSETS_DIR, load_settings

    settings = load_settings(overrides)
    settings.ensure_dirs()
    setup_logging(settings)

    app = ServiceFlask(
        __name__,
        template_folder=str(ASSETS_DIR / "templates"),
        static_folder=str(ASSETS_DIR / "static"),
        instance_path=str(settings.home),  # Flask's instance folder is the service home (settings.default_home)
    )
    install_parsing(app)  # request bodies: encodings, multipart errors, strict JSON (ai_service.http.parsing)
    app.config.update(
        MAX_CONTENT_LENGTH=settings.limits.max_content_length, MAX_FORM_PARTS=settings.limits.max_files + 16
    )
    app.config.update({key: value for key, value in (overrides or {}).items() if key.isupper()})

    runtime = build_runtime(settings)
    context.init_app(app, runtime)

    register_error_handlers(app, settings.limits.max_upload_mb)
    install_request_logging(app)
    install_request_metrics(app, runtime.device)
    install_security(app, settings)
    app.register_blueprint(probes.bp)
    app.register_blueprint(api.bp)
    app.register_blueprint(web.bp)

    logger.info(
        "ai_service {} starting: home={} device={} models={}",
        __version__,
        settings.home,
        runtime.device,
        runtime.registry.names(),
    )
    failed = runtime.registry.preload(settings.models.preload)
    for ref in settings.models.preload:
        if ref not in failed:
            with runtime.registry.using(ref) as model:
                runtime.engine.warm(model)
    return app
