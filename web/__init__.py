"""VisionNet web front end: JSON API under /api/v1, OpenAPI docs, one HTML page.

It records jobs and enqueues them; it never loads a model or opens the vector
store, and never waits on a task.
"""

from __future__ import annotations

from typing import Any

from flask import Response, render_template, request
from flask_openapi3 import Info, OpenAPI
from prometheus_client import CONTENT_TYPE_LATEST

from visionnet.config.settings import Settings, get_settings
from visionnet.web.api import collections, duplicates, health, images, jobs, models, submit
from visionnet.web.api.common import require_token
from visionnet.web.errors import register_error_handlers, validation_error_response
from visionnet.web.metrics import render as render_metrics
from visionnet.web.services import EXTENSION_KEY, Services, services
from visionnet.web.spooling import SpoolingRequest, remove_spooled


def create_app(test_config: dict[str, Any] | None = None) -> OpenAPI:
    """App factory. ``test_config`` may carry ``SETTINGS`` (a Settings) and Flask keys."""
    test_config = dict(test_config or {})
    settings: Settings = test_config.pop("SETTINGS", None) or get_settings()
    app = OpenAPI(
        __name__,
        info=Info(title="VisionNet API", version="1"),
        security_schemes={"bearerAuth": {"type": "http", "scheme": "bearer"}},
        validation_error_status=400,
        validation_error_callback=validation_error_response,
        doc_prefix="/docs",
    )
    # Large upload parts spool to the data directory, so an archive is moved, not copied.
    app.request_class = SpoolingRequest
    app.teardown_request(lambda _exc: remove_spooled(request))
    app.config.from_mapping(MAX_CONTENT_LENGTH=settings.web.max_upload_bytes, JSON_SORT_KEYS=False)
    app.config.update(test_config)
    app.extensions[EXTENSION_KEY] = Services.build(settings)
    register_error_handlers(app)
    for module in (submit, jobs, duplicates, collections, images, models, health):
        app.register_api(module.bp)

    @app.get("/metrics", doc_ui=False)
    def prometheus_metrics() -> Any:
        """Prometheus text format; behind the API token when one is configured."""
        require_token()
        return Response(render_metrics(services()), mimetype=CONTENT_TYPE_LATEST)

    @app.get("/", doc_ui=False)
    def page() -> str:
        return render_template(
            "index.html",
            token_required=bool(settings.web.api_token),
            flower_url=_flower_url(settings),
        )

    _declare_limits(app, settings)
    if not settings.web.api_token:
        _declare_no_auth(app)
    return app


def _declare_limits(app: OpenAPI, settings: Settings) -> None:
    """Put this deployment's limits (largest k, most files) into the request schemas."""
    limits = {
        "k": {"maximum": settings.jobs.max_top_k},
        "top_k": {"maximum": settings.jobs.max_top_k},
        "files": {"maxItems": settings.web.max_files},
        "paths": {"maxItems": settings.web.max_files},
    }
    for item in app.api_doc.get("paths", {}).values():
        for operation in item.values():
            body = operation.get("requestBody", {}) if isinstance(operation, dict) else {}
            for media in body.get("content", {}).values():
                properties = media.get("schema", {}).get("properties", {})
                for name, limit in limits.items():
                    if name not in properties:
                        continue
                    prop = properties[name]
                    # An optional value is anyOf [its type, null]: limit the type.
                    target = next((s for s in prop.get("anyOf", []) if "type" in s and
                                   s["type"] != "null"), prop)  # fmt: skip
                    target.update(limit)


def _declare_no_auth(app: OpenAPI) -> None:
    """Without a token nothing asks for one: the document must not say it does.

    The operations declare bearer auth when their blueprints are made (at
    import, before settings are known); the built document is cached, so it
    is edited once here.
    """
    spec = app.api_doc
    for item in spec.get("paths", {}).values():
        for operation in item.values():
            if isinstance(operation, dict):
                operation.pop("security", None)
                operation.get("responses", {}).pop("401", None)
    spec.get("components", {}).pop("securitySchemes", None)


def _flower_url(settings: Settings) -> str:
    """Where the page links to Flower: the host the browser used, on Flower's port."""
    from flask import request

    host = settings.flower.host
    if host in ("0.0.0.0", "::", ""):
        host = request.host.rsplit(":", 1)[0]
    return f"http://{host}:{settings.flower.port}/"
