"""Pieces every API module shares: blueprint factory with auth, and request parsing."""

from __future__ import annotations

import hmac
from functools import lru_cache
from typing import Any

from flask import request, url_for
from flask_openapi3 import APIBlueprint, Tag
from pydantic import BaseModel

from visionnet.core.paths import PathNotAllowedError, resolve_allowed
from visionnet.core.pathtext import to_os, to_text
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
# Submissions that name paths: outside the roots (403), absent (404).
PATH_ERRORS: dict[str | int, type[BaseModel] | dict[Any, Any] | None] = {
    403: ErrorBody,
    404: ErrorBody,
}


def api_blueprint(name: str, tag: str, description: str) -> APIBlueprint:
    bp = APIBlueprint(
        name,
        __name__,
        url_prefix=API_PREFIX,
        abp_tags=[Tag(name=tag, description=description)],
        abp_security=BEARER,
    )
    bp.before_request(require_token)
    return bp


def require_token() -> None:
    token = services().settings.web.api_token
    if not token:
        return
    header = request.headers.get("Authorization", "")
    given = header.removeprefix("Bearer ").strip() if header.startswith("Bearer ") else ""
    if not hmac.compare_digest(given.encode(), token.encode()):
        raise APIError(401, "unauthorized", "missing or wrong bearer token")


def request_body(models: RequestModels) -> dict[str, Any]:
    """OpenAPI requestBody: JSON, and multipart where the input kind takes uploads."""
    content = {"application/json": {"schema": inline_refs(models.json.model_json_schema())}}
    if models.form is not None and models.files is not None:
        content["multipart/form-data"] = {
            "schema": inline_refs(models.form.model_json_schema()),
            # Each uploaded part must be an image (Pillow reads the format, not the
            # name), sent as a file: a part with a filename, as browsers and curl -F do.
            "encoding": {
                field.name: {
                    "contentType": "image/*",
                    "headers": {
                        "Content-Disposition": {
                            "schema": {"type": "string"},
                            "example": f'form-data; name="{field.name}"; filename="image.png"',
                        }
                    },
                }
                for field in models.file_fields
            },
        }
    return {"requestBody": {"required": True, "content": content}}


def inline_refs(schema: dict[str, Any]) -> dict[str, Any]:
    """Replace pydantic's local ``#/$defs/X`` references with the definitions.

    Placed inside an OpenAPI document those references point nowhere (the
    document has no top-level ``$defs``); the request models are not recursive.
    """
    defs = schema.pop("$defs", {})

    def resolve(node: Any) -> Any:
        if isinstance(node, dict):
            ref = node.get("$ref")
            if isinstance(ref, str) and ref.startswith("#/$defs/"):
                return resolve(defs[ref.removeprefix("#/$defs/")])
            return {key: resolve(value) for key, value in node.items()}
        if isinstance(node, list):
            return [resolve(item) for item in node]
        return node

    resolved: dict[str, Any] = resolve(schema)
    return resolved


def _integral_numbers(node: Any) -> Any:
    """JSON has one number type: 5.0 is the integer 5 (as JSON Schema says); 5.5 stays."""
    if isinstance(node, float) and node.is_integer():
        return int(node)
    if isinstance(node, dict):
        return {key: _integral_numbers(value) for key, value in node.items()}
    if isinstance(node, list):
        return [_integral_numbers(item) for item in node]
    return node


def parse_request(models: RequestModels) -> BaseModel:
    """Validate the request as the multipart form or the JSON body of ``models``."""
    if models.form is not None and models.files and request.mimetype == "multipart/form-data":
        # Text fields go to pydantic as text (lax mode converts them); a field that
        # takes a list (classify's labels) repeats, like the file fields.
        names = {f.name for f in models.file_fields}
        lists = _list_fields(models.form)
        data: dict[str, Any] = {
            k: request.form.getlist(k) if k in lists else request.form[k]
            for k in request.form
            if k not in names
        }
        for field in models.file_fields:
            uploads = request.files.getlist(field.name)
            if uploads:
                data[field.name] = uploads if field.many else uploads[0]
        return models.form.model_validate(data)
    if request.is_json:
        try:
            body = request.get_json(silent=True)
        except RecursionError:  # deeply nested JSON: the parser gives up
            raise APIError(400, "bad_request", "JSON body is nested too deeply") from None
        if not isinstance(body, dict):
            raise APIError(400, "bad_request", "request body must be a JSON object")
        return models.json.model_validate(_integral_numbers(body))
    kinds = "multipart/form-data or application/json" if models.form else "application/json"
    raise APIError(415, "unsupported_media_type", f"send {kinds}")


@lru_cache(maxsize=64)
def _list_fields(model: type[BaseModel]) -> frozenset[str]:
    """Fields whose JSON Schema type is an array (possibly among null): repeated form fields."""
    found: set[str] = set()
    for name, prop in model.model_json_schema().get("properties", {}).items():
        kinds = [prop, *prop.get("anyOf", [])]
        if any(kind.get("type") == "array" for kind in kinds):
            found.add(name)
    return frozenset(found)


def allowed_path(path: str) -> str:
    """The resolved path, in text form (visionnet.core.pathtext); ``path`` is given in
    text form too (a byte that is not UTF-8 written ``\\xNN``, a backslash doubled)."""
    try:
        return to_text(str(resolve_allowed(to_os(path), services().settings.readable_roots)))
    except PathNotAllowedError as exc:
        # Outside the roots this deployment may read: forbidden, whatever the path.
        raise APIError(403, "path_not_allowed", str(exc)) from exc


def check_k(k: int | None) -> int:
    jobs = services().settings.jobs
    value = jobs.default_top_k if k is None else k
    if value > jobs.max_top_k:
        raise APIError(400, "bad_request", f"k/top_k must be at most {jobs.max_top_k}")
    return value


def accepted(job_id: str) -> Any:
    body = JobAccepted(job_id=job_id, status_url=url_for("jobs.get_job", job_id=job_id))
    return body.model_dump(), 202, {"Location": body.status_url}
