"""Request models of the submit endpoints, built from the job type table.

A job type's parameter model is shared by its forms; the input kind adds the
fields that carry the images. JSON bodies are strict (``"5"`` is not a number,
unknown keys are refused); multipart fields arrive as text and are validated
in pydantic's lax mode, which turns ``"5"`` into 5 and refuses ``"true"``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated, Any

from flask_openapi3 import FileStorage
from pydantic import BaseModel, ConfigDict, Field, create_model

from visionnet.core.jobtypes import InputKind, JobTypeSpec
from visionnet.web.schemas import IMAGE_ID_PATTERN


class StrictJson(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)


class IndexSource(StrictJson):
    path: str = Field(
        ..., min_length=1, description="Directory under an allowed root, walked recursively."
    )


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


# Per input kind: (JSON fields, multipart file field) beside the type's parameters.
_INPUT_FIELDS: dict[InputKind, tuple[dict[str, Any], FileField | None]] = {
    InputKind.IMAGES: (
        {
            "paths": (
                list[Annotated[str, Field(min_length=1)]],
                Field(..., min_length=1, description="Absolute paths under allowed roots."),
            )
        },
        FileField("files", many=True),
    ),
    InputKind.FOLDER: ({"source": (IndexSource, ...)}, None),
    InputKind.QUERY: (
        {
            "image_id": (
                str,
                Field(..., pattern=IMAGE_ID_PATTERN, description="Id of an indexed image."),
            )
        },
        FileField("image", many=False),
    ),
}
_FILE_DESCRIPTIONS = {"files": "One or more image files.", "image": "Query image."}


def request_models(spec: JobTypeSpec) -> RequestModels:
    json_fields, files = _INPUT_FIELDS[spec.input]
    title = spec.name.capitalize()
    json_model = create_model(f"{title}Json", __base__=(spec.params, StrictJson), **json_fields)
    form_model: type[BaseModel] | None = None
    if files is not None:
        annotation: Any = list[FileStorage] if files.many else FileStorage
        form_model = create_model(  # type: ignore[call-overload]
            f"{title}Form",
            __base__=spec.params,
            **{files.name: (annotation, Field(..., description=_FILE_DESCRIPTIONS[files.name]))},
        )
    return RequestModels(json=json_model, form=form_model, files=files)


def params_of(spec: JobTypeSpec, request: BaseModel) -> dict[str, Any]:
    """The job type's own parameters out of a parsed request."""
    return request.model_dump(include=set(spec.params.model_fields))
