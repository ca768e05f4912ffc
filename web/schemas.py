"""Request and response models of the API, declared once: they validate
requests and produce the OpenAPI document."""

from __future__ import annotations

from typing import Any, Literal

from flask_openapi3 import FileStorage
from pydantic import BaseModel, ConfigDict, Field

COLLECTION_PATTERN = r"^[A-Za-z_][A-Za-z0-9_]{0,254}$"
IMAGE_ID_PATTERN = r"^[0-9a-f]{64}$"

Collection = Field(
    "images", pattern=COLLECTION_PATTERN, description="Collection name (letters, digits, _)."
)


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)


class ClassifyJson(_Strict):
    paths: list[str] = Field(..., min_length=1, description="Absolute paths under allowed roots.")
    top_k: int | None = Field(None, ge=1, description="Labels per image.")


class ClassifyForm(BaseModel):
    files: list[FileStorage] = Field(..., description="One or more image files.")
    top_k: int | None = Field(None, ge=1, strict=True, description="Labels per image.")


class IndexSource(_Strict):
    path: str = Field(..., description="Directory under an allowed root, walked recursively.")


class IndexBody(_Strict):
    source: IndexSource
    collection: str = Collection


class SearchJson(_Strict):
    image_id: str = Field(..., pattern=IMAGE_ID_PATTERN, description="Id of an indexed image.")
    k: int | None = Field(None, ge=1, description="Number of neighbours.")
    collection: str = Collection


class SearchForm(BaseModel):
    image: FileStorage = Field(..., description="Query image.")
    k: int | None = Field(None, ge=1, strict=True, description="Number of neighbours.")
    collection: str = Collection


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
    type: Literal["classify", "index", "search"]
    state: Literal["queued", "running", "succeeded", "failed", "cancelled"]
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
