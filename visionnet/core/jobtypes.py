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

from pydantic import AfterValidator, BaseModel, Field, WithJsonSchema, model_validator

from visionnet.config.settings import Settings
from visionnet.core.queues import BULK_QUEUE, MODELS_QUEUE, STORE_QUEUE

COLLECTION_PATTERN = r"^[A-Za-z_][A-Za-z0-9_]{0,254}$"


class InputKind(StrEnum):
    """What a job reads; the web accepts and checks each kind the same way for every type."""

    # Uploaded files (multipart ``files``) or JSON ``paths`` under the allowed roots.
    IMAGES = "images"
    # JSON ``source.path``: a directory under an allowed root, walked recursively.
    FOLDER = "folder"
    # One uploaded ``image`` (multipart) or the JSON ``image_id`` of an indexed image;
    # or many queries at once: uploaded ``files``, JSON ``paths`` or a ``source.path`` folder.
    QUERY = "query"
    # Stored images of a collection: JSON ``ids``, or a ``path_prefix``.
    SELECTION = "selection"
    # A whole collection: only the parameters.
    COLLECTION = "collection"


def _collection() -> Any:
    return Field(
        "images", pattern=COLLECTION_PATTERN, description="Collection name (letters, digits, _)."
    )


# Labels from words: at most this many per job (each is one text through the text tower).
MAX_WORD_LABELS = 1000


def _word_labels(labels: list[str] | None) -> list[str] | None:
    if labels is not None and any(not label.strip() for label in labels):
        raise ValueError("labels must be non-empty strings")
    return labels


def _prompt(prompt: str | None) -> str | None:
    if prompt is not None and prompt.count("{}") != 1:
        raise ValueError('prompt must contain "{}" exactly once, where each label goes')
    return prompt


WordLabels = Annotated[
    Annotated[
        list[Annotated[str, Field(min_length=1, max_length=200)]],
        Field(min_length=1, max_length=MAX_WORD_LABELS),
    ]
    | None,
    AfterValidator(_word_labels),
    Field(
        None,
        description="Labels from words: each image is scored against these texts with the "
        "embedder's text tower (CLIP only: GET /api/v1/models says text_search).",
    ),
]
LabelPrompt = Annotated[
    Annotated[str, Field(min_length=2, max_length=200)] | None,
    AfterValidator(_prompt),
    Field(
        None,
        description='Template each label is put into, with "{}" once (e.g. "a photo of {}"); '
        "default: the label as given.",
    ),
]


def label_texts(labels: list[str], prompt: str | None) -> list[str]:
    """The texts the text tower reads: each label put into the prompt template."""
    return [prompt.replace("{}", label) if prompt else label for label in labels]


class ClassifyParams(BaseModel):
    top_k: int | None = Field(None, ge=1, description="Labels per image.")
    labels: WordLabels
    prompt: LabelPrompt


class EmbedParams(BaseModel):
    """Embedding takes no options: it uses the deployment's embedder, like index and search."""


class IndexParams(BaseModel):
    collection: str = _collection()
    classify: bool | None = Field(
        None,
        description=(
            "Also store each image's top label and score from the classifier, in the "
            "same pass (default: the jobs.classify_while_indexing setting)."
        ),
    )
    # Labels from words stored in the same label/label_score fields (default: the
    # jobs.index_labels setting); they replace the classifier's labels, so not both.
    labels: WordLabels
    prompt: LabelPrompt

    @model_validator(mode="after")
    def _one_labeller(self) -> IndexParams:
        if self.labels and self.classify:
            raise ValueError("give labels or classify, not both: both fill the stored label")
        return self


class SearchParams(BaseModel):
    k: int | None = Field(None, ge=1, description="Number of neighbours.")
    collection: str = _collection()
    # Filters: only rows matching every one given are searched.
    path_prefix: str | None = Field(
        None,
        pattern=r"^/(?:[^\\\u0000]|\\\\|\\x[0-9a-f]{2})*$",
        max_length=4096,
        description=(
            "Only images whose stored path starts with this (absolute, in the text form of "
            "paths: a backslash only as \\\\ or \\xNN)."
        ),
    )
    min_width: int | None = Field(None, ge=0, description="Only images at least this wide.")
    max_width: int | None = Field(None, ge=0, description="Only images at most this wide.")
    min_height: int | None = Field(None, ge=0, description="Only images at least this tall.")
    max_height: int | None = Field(None, ge=0, description="Only images at most this tall.")
    indexed_after: int | None = Field(
        None, ge=0, description="Only images indexed at or after this Unix time (seconds)."
    )
    indexed_before: int | None = Field(
        None, ge=0, description="Only images indexed before this Unix time (seconds)."
    )
    label: str | None = Field(
        None,
        min_length=1,
        max_length=256,
        description="Only images whose top label is this (indexed with classify on).",
    )
    min_score: float | None = Field(
        None,
        ge=-1,
        le=1,
        description="Leave out hits whose cosine similarity to the query is below this.",
    )
    # Off by default: "is this photo already in the library?" is answered by the
    # query itself coming back as its own best hit, at score 1.
    exclude_self: bool = Field(
        False,
        description="Leave out the query image itself (the same content id) when it is "
        "indexed, so k counts k other images: for 'more like this one'.",
    )

    def filters(self) -> dict[str, Any]:
        """The filters given, by name (the row filters the store applies)."""
        options = {"k", "collection", "min_score", "exclude_self"}
        return {k: v for k, v in self.model_dump(exclude=options).items() if v is not None}


class DeleteParams(BaseModel):
    collection: str = _collection()


class ExportParams(BaseModel):
    collection: str = _collection()


class DuplicatesParams(BaseModel):
    collection: str = _collection()
    threshold: float | None = Field(
        None,
        gt=0,
        le=1,
        description="Cosine similarity at or above which two images are near-duplicates "
        "(default: the duplicates.threshold setting).",
    )
    path_prefix: str | None = Field(
        None,
        pattern=r"^/(?:[^\\\u0000]|\\\\|\\x[0-9a-f]{2})*$",
        max_length=4096,
        description=(
            "Only images whose stored path starts with this (absolute, in the text form of "
            "paths: a backslash only as \\\\ or \\xNN)."
        ),
    )
    k: int | None = Field(
        None,
        ge=1,
        le=1000,
        description="Nearest neighbours looked at per image (default: duplicates.neighbours).",
    )


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
    # The handler module, when it is not the model worker's module of that name.
    module: str | None = None
    # The web answers 404 for a collection it does not know, before queueing anything.
    needs_collection: bool = False

    @property
    def task(self) -> str:
        """Name of the root task, sent by the web under the job's id."""
        return f"visionnet.{self.name}"

    @property
    def handler_module(self) -> str:
        return self.module or f"visionnet.workers.model_worker.{self.name}"


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
            "Find images similar to an uploaded image, an indexed one or a text; or, for "
            "several images at once (uploads, paths or a folder), each one's own hits",
            InputKind.QUERY,
            SearchParams,
            k_param="k",
        ),
        JobTypeSpec(
            "delete",
            "Delete stored images from a collection, by id or by path prefix",
            InputKind.SELECTION,
            DeleteParams,
            # A write: to the single store writer (any model worker with direct writes).
            queue=STORE_QUEUE,
            module="visionnet.workers.store_writer.delete_images",
        ),
        JobTypeSpec(
            "export",
            "Export a collection's ids, metadata and vectors as one Parquet file to download",
            InputKind.COLLECTION,
            ExportParams,
            # Long and read-only: bulk work, on a model worker.
            queue=BULK_QUEUE,
            module="visionnet.workers.model_worker.export",
        ),
        JobTypeSpec(
            "duplicates",
            "Find groups of near-duplicate images in a collection",
            InputKind.COLLECTION,
            DuplicatesParams,
            # Minutes over a large collection, read-only: bulk work, on a model worker.
            queue=BULK_QUEUE,
            module="visionnet.workers.model_worker.duplicates",
            needs_collection=True,
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


def retention_by_type(settings: Settings) -> dict[str, int]:
    """Seconds a finished job's record is kept, per job type (``jobs.retention_s``; 0 means
    ``result_ttl_s``). Every type of the table must have its setting: a type added
    without one fails here, at the first start, not by keeping its records forever."""
    kept = settings.jobs.retention_s
    return {name: getattr(kept, name) or settings.result_ttl_s for name in JOB_TYPES}
