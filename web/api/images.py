"""Stored images: what the catalog knows about one image (path, size, top label...)."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from pydantic import BaseModel, Field

from visionnet.core.jobtypes import COLLECTION_PATTERN
from visionnet.web.api.common import ERRORS, api_blueprint
from visionnet.web.errors import APIError
from visionnet.web.schemas import IMAGE_ID_PATTERN, ErrorBody
from visionnet.web.services import services

bp = api_blueprint("images", "images", "Images stored in collections.")


class ImagePath(BaseModel):
    image_id: str = Field(..., pattern=IMAGE_ID_PATTERN, description="Image id (SHA-256).")


class ImageQuery(BaseModel):
    collection: str | None = Field(
        None, pattern=COLLECTION_PATTERN, description="Look only here (default: every one)."
    )


class ImageView(BaseModel):
    id: str
    collection: str = Field(..., description="Where this entry was found.")
    collections: list[str] = Field(..., description="Every collection that holds the image.")
    path: str
    size: int = Field(..., description="File size in bytes.")
    width: int | None = None
    height: int | None = None
    indexed_at: str
    label: str | None = Field(None, description="Top label, when indexed with classify on.")
    label_score: float | None = None


@bp.get(
    "/images/<image_id>",
    summary="One stored image",
    responses={200: ImageView, 404: ErrorBody, **ERRORS},
)
def get_image(path: ImagePath, query: ImageQuery) -> Any:
    svc = services()
    live = [c["name"] for c in svc.collections.all() if c["state"] != "deleting"]
    if query.collection is not None:
        live = [name for name in live if name == query.collection]
    holding = svc.catalog.collections_of(path.image_id, live)
    entry = svc.catalog.get(holding[0], path.image_id) if holding else None
    if entry is None:
        where = f"collection {query.collection!r}" if query.collection else "any collection"
        raise APIError(404, "not_found", f"image {path.image_id} is not in {where}")
    indexed = datetime.fromtimestamp(entry["indexed_at"], tz=UTC).isoformat()
    return {
        **entry,
        # Older rows (indexed before these were stored) have none: null, not 0 or "".
        "width": entry["width"] or None,
        "height": entry["height"] or None,
        "label": entry["label"] or None,
        "label_score": entry["label_score"] if entry["label"] else None,
        "indexed_at": indexed,
        "collection": holding[0],
        "collections": holding,
    }
