"""Response models of the API and its path parameters; request models come from the
job type table (``visionnet.web.requests``)."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, Field

from visionnet.core.jobs import JobState
from visionnet.core.jobtypes import JobTypeName

IMAGE_ID_PATTERN = r"^[0-9a-f]{64}$"


class JobPath(BaseModel):
    job_id: str = Field(..., description="Job id returned by a POST.")


class JobAccepted(BaseModel):
    job_id: str
    status_url: str


class RetryAccepted(JobAccepted):
    retried: int = Field(..., description="Failed files the new job runs again.")
    not_retried: list[dict[str, str]] = Field(
        ..., description="Files that failed for good (not an image, corrupt), with the reason."
    )
    errors_truncated: bool = Field(
        ..., description="More files failed than the job kept (jobs.max_errors_kept)."
    )


class Progress(BaseModel):
    total: int = Field(
        ..., description="Files (images) in the job; grows while an index job plans."
    )
    done: int = Field(..., description="Files finished, failed ones included; ends at total.")
    failed: int
    files_per_s: float | None = Field(
        None, description="Over the last minute while running; over the whole run once finished."
    )
    eta_s: float | None = Field(None, description="Seconds left at that rate (once planned).")
    indexed: int | None = Field(None, description="Index jobs: new rows stored.")
    skipped: int | None = Field(None, description="Index jobs: files already in the collection.")
    moved: int | None = Field(
        None,
        description="Index jobs: of the skipped, files found at a new path whose old path is "
        "gone; their stored path was updated without embedding them again.",
    )
    stage_seconds: dict[str, float] | None = Field(
        None, description="Index jobs: worker seconds per stage so far (stages overlap)."
    )
    workers: dict[str, int] | None = Field(
        None, description="Index jobs: chunks embedded so far per worker node (name@host)."
    )


class JobView(BaseModel):
    id: str
    type: JobTypeName
    state: JobState
    progress: Progress
    result: dict[str, Any] | None = None
    error: str | None = None
    created_at: str
    started_at: str | None = None
    finished_at: str | None = None


class JobListQuery(BaseModel):
    type: JobTypeName | None = Field(None, description="Only jobs of this type.")
    state: JobState | None = Field(None, description="Only jobs in this state.")
    limit: int = Field(50, ge=1, le=500, description="Most jobs in one page.")
    cursor: str | None = Field(
        None, pattern=r"^[0-9]+(\.[0-9]+)?$", description="next_cursor of the previous page."
    )


class JobList(BaseModel):
    jobs: list[JobView]
    next_cursor: str | None = Field(None, description="Pass as cursor for the next page.")


class JobResultsQuery(BaseModel):
    after: int = Field(0, ge=0, description="Entries already read: the previous page's next.")
    limit: int = Field(100, ge=1, le=1000, description="Most entries in one page.")


class JobResults(BaseModel):
    job_id: str
    state: JobState
    total: int = Field(..., description="Entries the job will have (0 while a folder is walked).")
    entries: list[dict[str, Any]] = Field(
        ..., description="A search of many images: {name, id, hits} or {name, error} each."
    )
    next: int = Field(..., description="Pass as after for the next page.")
    complete: bool = Field(..., description="The job is over and every entry has been read.")


class QueueHealth(BaseModel):
    queue: str
    workers: list[str]


class WorkerHealth(BaseModel):
    name: str = Field(..., description="Celery node name, e.g. models@host.")
    host: str = Field(..., description="The machine it runs on.")
    pid: int = Field(..., description="Its main process on that machine.")
    queues: list[str] = Field(..., description="The queues it consumes.")
    seen_s_ago: float = Field(..., description="Seconds since its last liveness record.")


class Health(BaseModel):
    status: Literal["ok", "degraded"]
    redis: bool
    queues: list[QueueHealth]
    workers: list[WorkerHealth] = Field(
        default_factory=list,
        description="The live workers, from the records they write every few seconds.",
    )


class ErrorBody(BaseModel):
    error: str = Field(..., description="Short machine-readable name, e.g. bad_request.")
    message: str = Field(..., description="What was wrong, for a person.")
