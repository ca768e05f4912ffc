"""POST endpoints, one per entry of the job type table: validate, record, enqueue, 202 at once."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from flask import request
from pydantic import BaseModel

from visionnet.core.jobs import new_job_id
from visionnet.core.jobtypes import JOB_TYPES, InputKind, JobTypeSpec
from visionnet.web.api.common import (
    ERRORS,
    PATH_ERRORS,
    accepted,
    api_blueprint,
    check_k,
    parse_request,
    request_body,
)
from visionnet.web.errors import APIError
from visionnet.web.inputs import INPUTS
from visionnet.web.requests import params_of, request_models
from visionnet.web.schemas import ErrorBody, JobAccepted
from visionnet.web.services import Services, services

bp = api_blueprint("submit", "jobs", "Submit jobs: " + ", ".join(JOB_TYPES) + ".")
RESPONSES: dict[str | int, type[BaseModel] | dict[Any, Any] | None] = {
    202: JobAccepted,
    **ERRORS,
    **PATH_ERRORS,
    413: ErrorBody,
    415: ErrorBody,
}


def known_collection(svc: Services, name: str) -> None:
    """404 before anything is queued, for a job that only makes sense on existing images."""
    entry = svc.collections.get(name)
    if entry is None or entry["state"] == "deleting":
        raise APIError(404, "not_found", f"no collection named {name!r}")


def submit_endpoint(spec: JobTypeSpec) -> Callable[[], Any]:
    models = request_models(spec)
    read_input = INPUTS[spec.input]

    def submit() -> Any:
        svc = services()
        if spec.input is InputKind.FOLDER and request.mimetype == "multipart/form-data":
            # An archive upload: larger than other bodies, streamed to disk.
            request.max_content_length = svc.settings.web.max_archive_bytes
        req = parse_request(models)
        params = params_of(spec, req)
        if spec.needs_collection:
            known_collection(svc, params["collection"])
        if spec.k_param:
            params[spec.k_param] = check_k(params[spec.k_param])
        job_id = new_job_id()
        job_input = read_input(svc, job_id, req)
        svc.jobs.create(spec.name, params, total=job_input.total, job_id=job_id)
        svc.send(spec.task, job_id, params=params, **job_input.task_kwargs)
        return accepted(job_id)

    submit.__name__ = f"submit_{spec.name}"  # the Flask endpoint name
    return submit


for _spec in JOB_TYPES.values():
    bp.post(
        f"/{_spec.name}",
        summary=_spec.summary,
        responses=RESPONSES,
        openapi_extensions=request_body(request_models(_spec)),
    )(submit_endpoint(_spec))
