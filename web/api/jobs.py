"""Polling and cancelling jobs: reads only the job record, never waits on a task."""

from __future__ import annotations

import json
from typing import Any

from flask import send_file

from visionnet.core.datafiles import export_path
from visionnet.core.jobs import FINAL_STATES, JobState, is_job_id, is_retryable, new_job_id
from visionnet.core.jobtypes import job_type
from visionnet.core.urllists import is_url_path
from visionnet.web.api.common import ERRORS, accepted, api_blueprint
from visionnet.web.errors import APIError
from visionnet.web.jobview import job_document
from visionnet.web.schemas import (
    ErrorBody,
    JobList,
    JobListQuery,
    JobPath,
    JobResults,
    JobResultsQuery,
    JobView,
    RetryAccepted,
)
from visionnet.web.services import services

bp = api_blueprint("jobs", "jobs", "Poll and cancel jobs.")


def _load(job_id: str) -> dict[str, str]:
    jobs = services().jobs
    record = jobs.get(job_id) if is_job_id(job_id) else None
    if record is None:
        raise APIError(404, "not_found", f"no job with id {job_id!r} (unknown or expired)")
    return _fail_if_stalled(job_id, record)


# For the job endpoints of other modules (a duplicates job's groups).
load_job = _load


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
    "/jobs",
    summary="Jobs, newest first, optionally of one type or state; paginated",
    responses={200: JobList, **ERRORS},
)
def list_jobs(query: JobListQuery) -> Any:
    svc = services()
    before = float(query.cursor) if query.cursor else None
    records, last = svc.jobs.recent(
        job_type=query.type, state=query.state, limit=query.limit, before=before
    )
    return {
        "jobs": [job_document(r, svc.jobs, live=False) for r in records],
        "next_cursor": None if last is None else repr(last),
    }


@bp.get(
    "/jobs/<job_id>",
    summary="State, progress and result of a job",
    responses={200: JobView, 404: ErrorBody, **ERRORS},
)
def get_job(path: JobPath) -> Any:
    return job_document(_load(path.job_id), services().jobs)


@bp.get(
    "/jobs/<job_id>/results",
    summary="A job's result entries in pages, readable while it runs (a search of many images)",
    responses={200: JobResults, 404: ErrorBody, **ERRORS},
)
def get_results(path: JobPath, query: JobResultsQuery) -> Any:
    """Paged by position rather than streamed: a caller that loses its connection
    goes on from ``next``, proxies need nothing special, and no request holds a
    server thread for the length of a job."""
    svc = services()
    record = _load(path.job_id)
    entries = svc.jobs.results(path.job_id, query.after, query.limit)
    after = query.after + len(entries)
    final = JobState(record["state"]) in FINAL_STATES
    return {
        "job_id": path.job_id,
        "state": record["state"],
        "total": int(record.get("total", 0)),
        "entries": entries,
        "next": after,
        "complete": final and after >= svc.jobs.results_count(path.job_id),
    }


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
    # Vectors already written stay in their collection; only the record goes (and
    # an export's file, a duplicates job's groups).
    svc.jobs.delete(path.job_id)
    export_path(svc.settings, path.job_id).unlink(missing_ok=True)
    svc.duplicates.delete(path.job_id)
    return "", 204


@bp.get(
    "/jobs/<job_id>/export",
    summary="Download the Parquet file of a finished export job",
    responses={200: None, 404: ErrorBody, 409: ErrorBody, **ERRORS},
)
def download_export(path: JobPath) -> Any:
    """Streamed from disk (never read whole), with conditional and range requests."""
    svc = services()
    record = _load(path.job_id)
    if record["type"] != "export":
        raise APIError(404, "not_found", f"job {path.job_id!r} is not an export job")
    if record["state"] != JobState.SUCCEEDED:
        raise APIError(409, "conflict", f"export job {path.job_id!r} is {record['state']}")
    file = export_path(svc.settings, path.job_id)
    if not file.is_file():
        raise APIError(404, "not_found", f"the file of export job {path.job_id!r} is gone")
    name = f"{json.loads(record['params'])['collection']}-{path.job_id[:8]}.parquet"
    return send_file(
        file,
        mimetype="application/vnd.apache.parquet",
        as_attachment=True,
        download_name=name,
        conditional=True,
        max_age=0,
    )


@bp.post(
    "/jobs/<job_id>/retry",
    summary="A new index job over the failed files of a finished one",
    responses={202: RetryAccepted, 404: ErrorBody, 409: ErrorBody, **ERRORS},
)
def retry_job(path: JobPath) -> Any:
    """Files that failed for a reason a retry can change (unreadable, a worker died) run again;
    files whose bytes are the problem (not an image, corrupt) are listed, not retried.
    A URL-list job's URLs: those whose error says ``retryable`` (a timeout, a 5xx, a 429,
    a lost connection), not a 404, a refused address, a body over the cap."""
    svc = services()
    record = _load(path.job_id)
    if record["type"] != "index" or JobState(record["state"]) not in FINAL_STATES:
        raise APIError(
            409, "conflict", f"job {path.job_id!r} is not a finished index job: nothing to retry"
        )
    errors = svc.jobs.errors(path.job_id)
    again = sorted({e["path"] for e in errors if is_retryable(e)})
    permanent = [e for e in errors if not is_retryable(e)]
    if not again:
        raise APIError(
            409,
            "conflict",
            f"job {path.job_id!r} has no failed files a retry could change "
            f"({len(permanent)} failed for good: not images, corrupt or not found)",
        )
    params = json.loads(record["params"])
    job_id = new_job_id()
    svc.jobs.create("index", {**params, "retry_of": path.job_id}, job_id=job_id)
    # A URL-list job's failures are URLs: downloaded again, not read as files.
    urls = any(is_url_path(p) for p in again)
    svc.send(job_type("index").task, job_id, root="", params=params, paths=again, urls=urls)
    body, status, headers = accepted(job_id)
    body.update(
        retried=len(again),
        not_retried=permanent,
        errors_truncated=int(record.get("failed", 0)) > len(errors),
    )
    return body, status, headers
