"""Pieces every API module shares: blueprint factory with auth, and request parsing."""

from __future__ import annotations

import hmac
from typing import Any

from flask import request, url_for
from flask_openapi3 import APIBlueprint, Tag
from pydantic import BaseModel

from visionnet.core.paths import PathNotAllowedError, resolve_allowed
from visionnet.web.errors import APIError
from visionnet.web.requests import RequestModels
from visionnet.web.schemas import ErrorBody, JobAccepted
from visionnet.web.services import services

API_PREFIX = "/api/v1"
BEARER: list[dict[str, list[str]]] = [{"bearerAuth": []}]

ERRORS: dict[str | int, type[BaseModel] | dict[Any, Any] | None] = {
    400: ErrorBody,
    401: ErrorBody,
    503: ErrorBody,
}


def api_blueprint(name: str, tag: str, description: str) -> APIBlueprint:
    bp = APIBlueprint(
        name,
        __name__,
        url_prefix=API_PREFIX,
        abp_tags=[Tag(name=tag, description=description)],
        abp_security=BEARER,
    )
    bp.before_request(_require_token)
    return bp


def _require_token() -> None:
    token = services().settings.web.api_token
    if not token:
        return
    header = request.headers.get("Authorization", "")
    given = header.removeprefix("Bearer ").strip() if header.startswith("Bearer ") else ""
    if not hmac.compare_digest(given.encode(), token.encode()):
        raise APIError(401, "unauthorized", "missing or wrong bearer token")


def request_body(models: RequestModels) -> dict[str, Any]:
    """OpenAPI requestBody: JSON, and multipart where the input kind takes uploads."""
    content = {"application/json": {"schema": models.json.model_json_schema()}}
    if models.form is not None:
        content["multipart/form-data"] = {"schema": models.form.model_json_schema()}
    return {"requestBody": {"required": True, "content": content}}


def parse_request(models: RequestModels) -> BaseModel:
    """Validate the request as the multipart form or the JSON body of ``models``."""
    if models.form is not None and models.files and request.mimetype == "multipart/form-data":
        # Text fields go to pydantic as text (lax mode converts them); the file
        # field is the only one that can repeat.
        data: dict[str, Any] = {k: v for k, v in request.form.items() if k != models.files.name}
        uploads = request.files.getlist(models.files.name)
        if uploads:
            data[models.files.name] = uploads if models.files.many else uploads[0]
        return models.form.model_validate(data)
    if request.is_json:
        try:
            body = request.get_json(silent=True)
        except RecursionError:  # deeply nested JSON: the parser gives up
            raise APIError(400, "bad_request", "JSON body is nested too deeply") from None
        if not isinstance(body, dict):
            raise APIError(400, "bad_request", "request body must be a JSON object")
        return models.json.model_validate(body)
    kinds = "multipart/form-data or application/json" if models.form else "application/json"
    raise APIError(415, "unsupported_media_type", f"send {kinds}")


def allowed_path(path: str) -> str:
    try:
        return str(resolve_allowed(path, services().settings.resolved_roots))
    except PathNotAllowedError as exc:
        raise APIError(400, "path_not_allowed", str(exc)) from exc


def check_k(k: int | None) -> int:
    jobs = services().settings.jobs
    value = jobs.default_top_k if k is None else k
    if value > jobs.max_top_k:
        raise APIError(400, "bad_request", f"k/top_k must be at most {jobs.max_top_k}")
    return value


def accepted(job_id: str) -> Any:
    body = JobAccepted(job_id=job_id, status_url=url_for("jobs.get_job", job_id=job_id))
    return body.model_dump(), 202, {"Location": body.status_url}
