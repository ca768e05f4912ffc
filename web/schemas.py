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


class Progress(BaseModel):
    total: int
    done: int
    failed: int


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


class QueueHealth(BaseModel):
    queue: str
    workers: list[str]


class Health(BaseModel):
    status: Literal["ok", "degraded"]
    redis: bool
    queues: list[QueueHealth]


class ErrorBody(BaseModel):
    error: str = Field(..., description="Short machine-readable name, e.g. bad_request.")
    message: str = Field(..., description="What was wrong, for a person.")
