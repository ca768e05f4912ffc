"""The table of job types: the one place a job type is declared.

Each entry drives everything around it: the job type names the API and job
records accept, the root task's name and queue (so Celery's routes and
``include`` list), the request models the web builds and documents, and the
worker module that handles it (``visionnet.workers.model_worker.<name>``).
Adding a job type is one entry here (with its parameter model) and one handler
module; see ``docs/adding-a-job-type.md``.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from typing import Annotated, Any

from pydantic import AfterValidator, BaseModel, Field, WithJsonSchema

from visionnet.core.queues import BULK_QUEUE, MODELS_QUEUE

COLLECTION_PATTERN = r"^[A-Za-z_][A-Za-z0-9_]{0,254}$"


class InputKind(StrEnum):
    """What a job reads; the web accepts and checks each kind the same way for every type."""

    # Uploaded files (multipart ``files``) or JSON ``paths`` under the allowed roots.
    IMAGES = "images"
    # JSON ``source.path``: a directory under an allowed root, walked recursively.
    FOLDER = "folder"
    # One uploaded ``image`` (multipart) or the JSON ``image_id`` of an indexed image.
    QUERY = "query"


def _collection() -> Any:
    return Field(
        "images", pattern=COLLECTION_PATTERN, description="Collection name (letters, digits, _)."
    )


class ClassifyParams(BaseModel):
    top_k: int | None = Field(None, ge=1, description="Labels per image.")


class EmbedParams(BaseModel):
    """Embedding takes no options: it uses the deployment's embedder, like index and search."""


class IndexParams(BaseModel):
    collection: str = _collection()


class SearchParams(BaseModel):
    k: int | None = Field(None, ge=1, description="Number of neighbours.")
    collection: str = _collection()


@dataclass(frozen=True)
class JobTypeSpec:
    name: str
    summary: str
    input: InputKind
    # Options beside the input: validated by the web, read back by the handler.
    params: type[BaseModel]
    # The parameter that is a "k" (defaulted and capped by settings.jobs), if any.
    k_param: str | None = None
    queue: str = MODELS_QUEUE

    @property
    def task(self) -> str:
        """Name of the root task, sent by the web under the job's id."""
        return f"visionnet.{self.name}"

    @property
    def handler_module(self) -> str:
        return f"visionnet.workers.model_worker.{self.name}"


JOB_TYPES: dict[str, JobTypeSpec] = {
    spec.name: spec
    for spec in (
        JobTypeSpec(
            "classify",
            "Classify uploaded images, or images by path",
            InputKind.IMAGES,
            ClassifyParams,
            k_param="top_k",
        ),
        JobTypeSpec(
            "embed",
            "Feature vectors of uploaded images, or images by path",
            InputKind.IMAGES,
            EmbedParams,
        ),
        JobTypeSpec(
            "index",
            "Index every image under a directory",
            InputKind.FOLDER,
            IndexParams,
            queue=BULK_QUEUE,
        ),
        JobTypeSpec(
            "search",
            "Find images similar to an uploaded image or an indexed one",
            InputKind.QUERY,
            SearchParams,
            k_param="k",
        ),
    )
}


def _known(name: str) -> str:
    if name not in JOB_TYPES:
        raise ValueError(f"unknown job type {name!r}; known: {', '.join(JOB_TYPES)}")
    return name


# A job type name: checked against the table, and an enum in the OpenAPI document.
JobTypeName = Annotated[
    str,
    AfterValidator(_known),
    WithJsonSchema({"type": "string", "enum": list(JOB_TYPES)}),
]


def job_type(name: str) -> JobTypeSpec:
    return JOB_TYPES[_known(name)]
