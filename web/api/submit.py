"""POST endpoints: validate, record the job, enqueue, answer 202 at once."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from pydantic import BaseModel

from visionnet.jobs import JobType
from visionnet.queues import CLASSIFY, PLAN_INDEX, SEARCH
from web.api.common import (
    ERRORS,
    accepted,
    allowed_path,
    api_blueprint,
    check_k,
    dual_request_body,
    parse_dual,
)
from web.errors import APIError
from web.schemas import (
    ClassifyForm,
    ClassifyJson,
    ErrorBody,
    IndexBody,
    JobAccepted,
    SearchForm,
    SearchJson,
)
from web.services import services
from web.uploads import read_image_upload

bp = api_blueprint("submit", "jobs", "Submit classify, index and search jobs.")
RESPONSES: dict[str | int, type[BaseModel] | dict[Any, Any] | None] = {
    202: JobAccepted,
    **ERRORS,
    413: ErrorBody,
    415: ErrorBody,
}


@bp.post(
    "/classify",
    summary="Classify uploaded images, or images by path",
    responses=RESPONSES,
    openapi_extensions=dual_request_body(ClassifyForm, ClassifyJson),
)
def classify() -> Any:
    svc = services()
    req = parse_dual(ClassifyForm, ClassifyJson)
    top_k = check_k(req.top_k)  # type: ignore[attr-defined]
    if isinstance(req, ClassifyJson):
        count = len(req.paths)
    else:
        assert isinstance(req, ClassifyForm)
        count = len(req.files)
    if count > svc.settings.web.max_files:
        raise APIError(400, "bad_request", f"at most {svc.settings.web.max_files} images per job")
    if isinstance(req, ClassifyJson):
        sources: list[dict[str, str]] = []
        for path in req.paths:
            resolved = allowed_path(path)
            if not Path(resolved).is_file():
                raise APIError(400, "bad_request", f"{path!r} is not a file")
            sources.append({"path": resolved})
        job_id = svc.jobs.create(JobType.CLASSIFY, {"top_k": top_k}, total=count)
    else:
        payloads = [
            (f.filename or f"upload-{i}", read_image_upload(f)) for i, f in enumerate(req.files)
        ]
        job_id = svc.jobs.create(JobType.CLASSIFY, {"top_k": top_k}, total=count)
        sources = [
            {"blob": svc.blobs.put(job_id, i, data), "name": name}
            for i, (name, data) in enumerate(payloads)
        ]
    svc.send(CLASSIFY, job_id, sources=sources, top_k=top_k)
    return accepted(job_id)


@bp.post("/index", summary="Index every image under a directory", responses=RESPONSES)
def index(body: IndexBody) -> Any:
    svc = services()
    root = allowed_path(body.source.path)
    if not Path(root).is_dir():
        raise APIError(400, "bad_request", f"{body.source.path!r} is not a directory")
    params = {"root": root, "collection": body.collection}
    job_id = svc.jobs.create(JobType.INDEX, params)
    svc.send(PLAN_INDEX, job_id, **params)
    return accepted(job_id)


@bp.post(
    "/search",
    summary="Find images similar to an uploaded image or an indexed one",
    responses=RESPONSES,
    openapi_extensions=dual_request_body(SearchForm, SearchJson),
)
def search() -> Any:
    svc = services()
    req = parse_dual(SearchForm, SearchJson)
    k = check_k(req.k)  # type: ignore[attr-defined]
    collection: str = req.collection  # type: ignore[attr-defined]
    if isinstance(req, SearchJson):
        job_id = svc.jobs.create(JobType.SEARCH, {"collection": collection, "k": k}, total=1)
        query: dict[str, object] = {"image_id": req.image_id}
    else:
        assert isinstance(req, SearchForm)
        data = read_image_upload(req.image)
        job_id = svc.jobs.create(JobType.SEARCH, {"collection": collection, "k": k}, total=1)
        name = req.image.filename or "query"
        query = {"source": {"blob": svc.blobs.put(job_id, 0, data), "name": name}}
    svc.send(SEARCH, job_id, query=query, collection=collection, k=k)
    return accepted(job_id)
