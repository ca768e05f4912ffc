"""The models the workers run, as they described them when they loaded them.

The web never loads a model; the page asks here whether the embedder can
embed text (CLIP), to offer text-to-image search only where it works.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, Field

from visionnet.web.api.common import api_blueprint
from visionnet.web.services import services

bp = api_blueprint("models", "models", "The models the workers have loaded.")


class LoadedModel(BaseModel):
    name: str = Field(..., description="A hub id, builtin:<name> or local:<folder>.")
    model_type: str
    random_weights: bool
    flip_invariant: bool = Field(
        False, description="Outputs averaged over each image and its mirror."
    )
    text_search: bool = Field(False, description="It embeds text in the images' space (CLIP).")


class Models(BaseModel):
    classifier: LoadedModel | None = Field(None, description="null until a worker has loaded it.")
    embedder: LoadedModel | None = Field(None, description="null until a worker has loaded it.")
    text_search: bool = Field(
        ..., description="Search accepts a text query (the embedder embeds text)."
    )


@bp.get("/models", summary="The classifier and embedder the workers run", responses={200: Models})
def models() -> Any:
    loaded = services().models

    def described(kind: str) -> LoadedModel | None:
        found = loaded.get(kind)
        return LoadedModel.model_validate(found) if found else None

    embedder = described("embedder")
    body = Models(
        classifier=described("classifier"),
        embedder=embedder,
        text_search=bool(embedder and embedder.text_search),
    )
    return body.model_dump()
