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


class Agreement(BaseModel):
    against: str = Field(..., description="The reference, torch/fp32.")
    probes: int = Field(..., description="Probe pictures compared.")
    cosine_min: float
    cosine_mean: float
    recall_at_10: float = Field(
        ..., description="Share of each probe's 10 nearest probes that fp32 also finds."
    )
    top1: float | None = Field(
        None, description="Share of probes with fp32's best label (classifiers only)."
    )


class LoadedModel(BaseModel):
    name: str = Field(..., description="A hub id, builtin:<name> or local:<folder>.")
    model_type: str
    random_weights: bool
    flip_invariant: bool = Field(
        False, description="Outputs averaged over each image and its mirror."
    )
    text_search: bool = Field(False, description="It embeds text in the images' space (CLIP).")
    runtime: str = Field("torch", description="What runs it: torch or onnxruntime.")
    precision: str = Field("fp32", description="fp32, bf16, fp16 or int8.")
    runtime_reason: str = Field(
        "", description='Why this runtime and precision (what "auto" chose on this machine).'
    )
    agreement: Agreement | None = Field(
        None, description="Its outputs against torch fp32's, measured at load; null: it is fp32."
    )


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
