"""Pieces every API module shares: blueprint factory with auth, and request parsing."""

from __future__ import annotations

import hmac
from typing import Any, TypeVar

from flask import request, url_for
from flask_openapi3 import APIBlueprint, Tag
from pydantic import BaseModel

from visionnet.paths import PathNotAllowedError, resolve_allowed
from web.errors import APIError
from web.schemas import ErrorBody, JobAccepted
from web.services import services

M = TypeVar("M", bound=BaseModel)
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


def dual_request_body(form: type[BaseModel], json_model: type[BaseModel]) -> dict[str, Any]:
    """OpenAPI requestBody for an endpoint that takes multipart or JSON."""
    return {
        "requestBody": {
            "required": True,
            "content": {
                "multipart/form-data": {"schema": form.model_json_schema()},
                "application/json": {"schema": json_model.model_json_schema()},
            },
        }
    }


def parse_dual(form: type[BaseModel], json_model: type[M]) -> BaseModel:
    """Validate the request as ``form`` (multipart) or ``json_model`` (JSON)."""
    if request.mimetype == "multipart/form-data":
        data: dict[str, Any] = {}
        for key in form.model_fields:
            annotation = str(form.model_fields[key].annotation)
            files = request.files.getlist(key)
            if files:
                data[key] = files if annotation.startswith("list") else files[0]
            elif key in request.form:
                value = request.form[key]
                # Integer fields are strict: "12" becomes 12, "true" stays and is refused.
                is_int = "int" in annotation and value.lstrip("-").isdigit()
                data[key] = int(value) if is_int else value
        return form.model_validate(data)
    if request.is_json:
        body = request.get_json(silent=True)
        if not isinstance(body, dict):
            raise APIError(400, "bad_request", "request body must be a JSON object")
        return json_model.model_validate(body)
    raise APIError(415, "unsupported_media_type", "send multipart/form-data or application/json")


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
