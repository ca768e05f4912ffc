"""Collections: what each holds (from the registry in Redis), and dropping one (a writer's task)."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from kombu.exceptions import OperationalError
from pydantic import BaseModel, Field

from visionnet.core.jobtypes import COLLECTION_PATTERN
from visionnet.core.queues import DROP_COLLECTION
from visionnet.web.api.common import ERRORS, api_blueprint
from visionnet.web.errors import APIError
from visionnet.web.schemas import ErrorBody
from visionnet.web.services import services

bp = api_blueprint("collections", "collections", "Collections of indexed images.")


class CollectionPath(BaseModel):
    name: str = Field(..., pattern=COLLECTION_PATTERN, description="Collection name.")


class CollectionView(BaseModel):
    name: str
    count: int = Field(..., description="Images stored through VisionNet's index jobs.")
    model: str = Field(..., description="The embedder whose vectors it holds.")
    dim: int
    vectors: list[str] = Field(
        default_factory=list,
        description='The runtime/precision its vectors came from, e.g. ["torch/bf16"] '
        "(more than one where models.allow_mixed_vectors let them mix; empty: not recorded).",
    )
    created_at: str
    state: str = Field(..., description="ready, or deleting while the writer drops it.")


class CollectionList(BaseModel):
    collections: list[CollectionView]


def _view(entry: dict[str, Any]) -> dict[str, Any]:
    created = datetime.fromtimestamp(entry["created_at"], tz=UTC).isoformat()
    return {**entry, "created_at": created}


@bp.get("/collections", summary="Every collection", responses={200: CollectionList, **ERRORS})
def list_collections() -> Any:
    found = services().collections.all()
    return {"collections": [_view(c) for c in found if c["state"] != "deleting"]}


@bp.get(
    "/collections/<name>",
    summary="One collection",
    responses={200: CollectionView, 404: ErrorBody, **ERRORS},
)
def get_collection(path: CollectionPath) -> Any:
    entry = services().collections.get(path.name)
    # Once deleted it is gone for the API, while the writer drops it behind.
    if entry is None or entry["state"] == "deleting":
        raise APIError(404, "not_found", f"no collection named {path.name!r}")
    return _view(entry)


@bp.delete(
    "/collections/<name>",
    summary="Drop a collection and its vectors (done by the writer; 202 at once)",
    responses={202: CollectionView, 404: ErrorBody, **ERRORS},
)
def delete_collection(path: CollectionPath) -> Any:
    svc = services()
    entry = svc.collections.mark_deleting(path.name)
    if entry is None:
        raise APIError(404, "not_found", f"no collection named {path.name!r}")
    # A write: routed to the single store writer with Milvus Lite, to any model
    # worker with direct writes (visionnet.core.queues.task_routes).
    try:
        svc.celery.send_task(DROP_COLLECTION, kwargs={"collection": path.name}, ignore_result=True)
    except OperationalError:
        # Not half-done: unsent, the collection is back (its 503 says try again).
        # A drop that was delivered after all still runs, and the entry goes then.
        svc.collections.unmark_deleting(path.name)
        raise
    return _view(entry), 202
