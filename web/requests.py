"""Request models of the submit endpoints, built from the job type table.

A job type's parameter model is shared by its forms; the input kind adds the
fields that carry the images. JSON bodies are strict (``"5"`` is not a number,
unknown keys are refused); multipart fields arrive as text and are validated
in pydantic's lax mode, which turns ``"5"`` into 5 and refuses ``"true"``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated, Any, get_args

from flask_openapi3 import FileStorage
from pydantic import BaseModel, ConfigDict, Field, create_model, model_validator
from pydantic.json_schema import SkipJsonSchema

from visionnet.core.jobtypes import InputKind, JobTypeSpec
from visionnet.web.schemas import IMAGE_ID_PATTERN


class StrictJson(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)


# An absolute path with no NUL byte; whether it lies under a root is checked on use.
ABSOLUTE_PATH = r"^/[^\u0000]*$"


class IndexSource(StrictJson):
    path: str = Field(
        ...,
        pattern=ABSOLUTE_PATH,
        description="Absolute path of a directory under an allowed root, walked recursively.",
    )


class IndexJobSource(StrictJson):
    """An index job's source: a folder, or a URL list (issue 27)."""

    path: str | None = Field(
        None,
        pattern=ABSOLUTE_PATH,
        description="Absolute path of a directory under an allowed root, walked recursively.",
    )
    url_list: str | None = Field(
        None,
        pattern=ABSOLUTE_PATH,
        description="Absolute path of a URL list under an allowed root: text (one URL a "
        "line), CSV or Parquet with a 'url' column (optional 'id', 'caption').",
    )

    @model_validator(mode="after")
    def _one_source(self) -> IndexJobSource:
        if (self.path is None) == (self.url_list is None):
            raise ValueError("give either path (a folder) or url_list (a list of URLs)")
        return self


@dataclass(frozen=True)
class FileField:
    """The multipart field that carries the upload(s)."""

    name: str
    many: bool


@dataclass(frozen=True)
class RequestModels:
    json: type[BaseModel]
    form: type[BaseModel] | None
    files: FileField | None
    # Further upload fields of the same form (a search's several ``files`` beside its
    # one ``image``); with any, every upload field is optional and the input checks.
    more_files: tuple[FileField, ...] = ()

    @property
    def file_fields(self) -> tuple[FileField, ...]:
        return ((self.files,) if self.files else ()) + self.more_files


# Many queries in one search job: JSON paths, or a folder (walked like an index's).
_QUERY_PATHS = (
    list[Annotated[str, Field(pattern=ABSOLUTE_PATH)]] | None,
    Field(
        None,
        min_length=1,
        description="Several query images: absolute paths under allowed roots (each gets "
        "its own hits; results paged at /api/v1/jobs/{id}/results).",
    ),
)
_QUERY_FOLDER = (
    IndexSource | None,
    Field(None, description="Every image under a folder as a query (like paths)."),
)

# Per input kind: (JSON fields, multipart file field) beside the type's parameters.
_INPUT_FIELDS: dict[InputKind, tuple[dict[str, Any], FileField | None]] = {
    InputKind.IMAGES: (
        {
            "paths": (
                list[Annotated[str, Field(pattern=ABSOLUTE_PATH)]],
                Field(..., min_length=1, description="Absolute paths under allowed roots."),
            )
        },
        FileField("files", many=True),
    ),
    InputKind.FOLDER: ({"source": (IndexJobSource, ...)}, FileField("archive", many=False)),
    InputKind.QUERY: (
        {
            "image_id": (
                str | None,
                Field(None, pattern=IMAGE_ID_PATTERN, description="Id of an indexed image."),
            ),
            "text": (
                str | None,
                Field(
                    None,
                    min_length=1,
                    max_length=1000,
                    description="A text query (CLIP embedders: GET /api/v1/models says).",
                ),
            ),
            "paths": _QUERY_PATHS,
            "source": _QUERY_FOLDER,
        },
        FileField("image", many=False),
    ),
    InputKind.SELECTION: (
        {
            "ids": (
                list[Annotated[str, Field(pattern=IMAGE_ID_PATTERN)]] | None,
                Field(None, min_length=1, max_length=10000, description="Image ids."),
            ),
            "path_prefix": (
                str | None,
                Field(
                    None,
                    pattern=r"^/(?:[^\\\u0000]|\\\\|\\x[0-9a-f]{2})*$",
                    max_length=4096,
                    description="Every image whose stored path starts with this (absolute).",
                ),
            ),
        },
        None,
    ),
    InputKind.COLLECTION: ({}, None),
}
# Upload fields beside the kind's own: a search's several query images.
_MORE_FILES: dict[InputKind, tuple[FileField, ...]] = {
    InputKind.QUERY: (FileField("files", many=True),),
    # An index job's other upload: a list of URLs instead of an archive of images.
    InputKind.FOLDER: (FileField("url_list", many=False),),
}
_FILE_DESCRIPTIONS = {
    "files": "One or more image files (search: several query images, each its own hits).",
    "image": "Query image.",
    "archive": "A zip or tar archive of images (tar may be gzip, bzip2 or xz compressed).",
    "url_list": "A list of image URLs to download and index: text (one URL a line; blank "
    "lines and # comments skipped), CSV or Parquet with a 'url' column (optional 'id', "
    "'caption').",
}


def request_models(spec: JobTypeSpec) -> RequestModels:
    json_fields, files = _INPUT_FIELDS[spec.input]
    title = spec.name.capitalize()
    json_model = create_model(f"{title}Json", __base__=(spec.params, StrictJson), **json_fields)
    form_model: type[BaseModel] | None = None
    more = _MORE_FILES.get(spec.input, ())
    if files is not None:
        uploads = {f.name: _file_field(f, required=not more) for f in (files, *more)}
        form_model = create_model(  # type: ignore[call-overload]
            f"{title}Form",
            __base__=spec.params,
            **_form_fields(spec.params),
            **uploads,
        )
    return RequestModels(json=json_model, form=form_model, files=files, more_files=more)


def _file_field(files: FileField, *, required: bool) -> tuple[Any, Any]:
    annotation: Any = list[FileStorage] if files.many else FileStorage
    description = _FILE_DESCRIPTIONS[files.name]
    if not required:
        absent: Any = SkipJsonSchema[None]  # type: ignore[misc]
        return annotation | absent, Field(None, description=description)
    return annotation, Field(..., description=description, min_length=1 if files.many else None)


def _form_fields(params: type[BaseModel]) -> dict[str, Any]:
    """The parameters as multipart fields: an optional one is left out, never ``null``.

    A form field is text and cannot be null, so ``int | None`` is documented as
    ``integer`` (not required); the JSON body keeps ``null`` as a valid value.
    """
    fields: dict[str, Any] = {}
    for name, info in params.model_fields.items():
        args = get_args(info.annotation)
        if type(None) in args and len(args) == 2:
            (inner,) = (a for a in args if a is not type(None))
            # Constraints (ge=1) go on the value type, or the union drops them.
            value: Any = Annotated[inner, *info.metadata] if info.metadata else inner
            absent: Any = SkipJsonSchema[None]  # type: ignore[misc]
            fields[name] = (
                value | absent,
                Field(info.default, description=info.description),
            )
    return fields


def params_of(spec: JobTypeSpec, request: BaseModel) -> dict[str, Any]:
    """The job type's own parameters out of a parsed request."""
    return request.model_dump(include=set(spec.params.model_fields))
