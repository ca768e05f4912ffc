"""A finished duplicates job's groups, a page at a time (read from Redis, never the store)."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, Field

from visionnet.core.jobs import JobState
from visionnet.web.api.common import ERRORS, api_blueprint
from visionnet.web.api.jobs import load_job
from visionnet.web.errors import APIError
from visionnet.web.schemas import ErrorBody, JobPath
from visionnet.web.services import services

bp = api_blueprint("duplicates", "jobs", "Groups of near-duplicate images.")

MAX_PER_PAGE = 200


class GroupsQuery(BaseModel):
    page: int = Field(1, ge=1, description="Page number, from 1.")
    per_page: int = Field(20, ge=1, le=MAX_PER_PAGE, description="Groups per page.")


class GroupMember(BaseModel):
    id: str
    path: str
    size: int = Field(..., description="File size in bytes.")
    width: int
    height: int
    score: float = Field(..., description="Cosine similarity to the group's keep member.")


class DuplicateGroup(BaseModel):
    size: int = Field(..., description="Members in the group.")
    keep: str = Field(
        ...,
        description="Id of the member to keep: most pixels, then the larger file, then the "
        "smaller id.",
    )
    members: list[GroupMember] = Field(
        ..., description="The keep member first, then by score, highest first."
    )


class GroupsPage(BaseModel):
    page: int
    per_page: int
    total: int = Field(..., description="Groups in the job's result.")
    groups: list[DuplicateGroup] = Field(
        ..., description="Largest first; ties: the higher best score, then the keep id."
    )


@bp.get(
    "/jobs/<job_id>/groups",
    summary="Groups of a finished duplicates job, largest first; paged",
    responses={200: GroupsPage, 404: ErrorBody, 409: ErrorBody, **ERRORS},
)
def job_groups(path: JobPath, query: GroupsQuery) -> Any:
    record = load_job(path.job_id)
    if record["type"] != "duplicates":
        raise APIError(404, "not_found", f"job {path.job_id!r} is not a duplicates job")
    if record["state"] != JobState.SUCCEEDED:
        raise APIError(
            409, "conflict", f"duplicates job {path.job_id!r} is {record['state']}: no groups"
        )
    total, groups = services().duplicates.page(path.job_id, query.page, query.per_page)
    return {"page": query.page, "per_page": query.per_page, "total": total, "groups": groups}
