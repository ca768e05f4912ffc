"""Polling and cancelling jobs: reads only the job record, never waits on a task."""

from __future__ import annotations

from typing import Any

from visionnet.core.jobs import JobState, is_job_id
from visionnet.web.api.common import ERRORS, api_blueprint
from visionnet.web.errors import APIError
from visionnet.web.jobview import job_document
from visionnet.web.schemas import ErrorBody, JobPath, JobView
from visionnet.web.services import services

bp = api_blueprint("jobs", "jobs", "Poll and cancel jobs.")


def _load(job_id: str) -> dict[str, str]:
    jobs = services().jobs
    record = jobs.get(job_id) if is_job_id(job_id) else None
    if record is None:
        raise APIError(404, "not_found", f"no job with id {job_id!r} (unknown or expired)")
    return _fail_if_stalled(job_id, record)


def _fail_if_stalled(job_id: str, record: dict[str, str]) -> dict[str, str]:
    """A running job that stopped making progress ends ``failed``, never ``running`` forever.

    Checked whenever a job is read: a job is only ever seen through a read.
    """
    svc = services()
    limit = svc.settings.jobs.stall_timeout_s
    idle = svc.jobs.stalled_since(record)
    if idle is None or idle <= limit:
        return record
    svc.jobs.transition(
        job_id,
        JobState.FAILED,
        error=f"no progress for {idle:.0f}s (jobs.stall_timeout_s={limit}): the workers "
        "that held it are gone; submit it again",
    )
    return svc.jobs.get(job_id) or record


@bp.get(
    "/jobs/<job_id>",
    summary="State, progress and result of a job",
    responses={200: JobView, 404: ErrorBody, **ERRORS},
)
def get_job(path: JobPath) -> Any:
    return job_document(_load(path.job_id), services().jobs)


@bp.post(
    "/jobs/<job_id>/cancel",
    summary="Cancel a job",
    responses={202: JobView, 404: ErrorBody, 409: ErrorBody, **ERRORS},
)
def cancel_job(path: JobPath) -> Any:
    svc = services()
    _load(path.job_id)
    if not svc.jobs.transition(path.job_id, JobState.CANCELLED):
        raise APIError(409, "conflict", f"job {path.job_id!r} has already finished")
    # Queued tasks see the cancelled record and stop; revoking drops the root task early.
    svc.celery.control.revoke(path.job_id)
    return job_document(_load(path.job_id), svc.jobs), 202


@bp.delete(
    "/jobs/<job_id>",
    summary="Delete a job record (cancelling the job first if it is still going)",
    responses={204: None, 404: ErrorBody, **ERRORS},
)
def delete_job(path: JobPath) -> Any:
    svc = services()
    _load(path.job_id)
    if svc.jobs.transition(path.job_id, JobState.CANCELLED):
        svc.celery.control.revoke(path.job_id)
    # Vectors already written stay in their collection; only the record goes.
    svc.jobs.delete(path.job_id)
    return "", 204
