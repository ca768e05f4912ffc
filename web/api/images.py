"""Stored images: what the catalog knows about one image (path, size, top label...)."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from flask import request, send_file
from pydantic import BaseModel, Field

from visionnet.core.jobtypes import COLLECTION_PATTERN
from visionnet.web.api.common import ERRORS, api_blueprint
from visionnet.web.errors import APIError
from visionnet.web.schemas import IMAGE_ID_PATTERN, ErrorBody
from visionnet.web.services import services
from visionnet.web.thumbnails import SIZES, ThumbnailError, thumbnail

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


def _find(image_id: str, collection: str | None) -> tuple[dict[str, Any], list[str]]:
    """The catalog entry of an image and the live collections that hold it; 404 if none."""
    svc = services()
    live = [c["name"] for c in svc.collections.all() if c["state"] != "deleting"]
    if collection is not None:
        live = [name for name in live if name == collection]
    holding = svc.catalog.collections_of(image_id, live)
    entry = svc.catalog.get(holding[0], image_id) if holding else None
    if entry is None:
        where = f"collection {collection!r}" if collection else "any collection"
        raise APIError(404, "not_found", f"image {image_id} is not in {where}")
    return entry, holding


@bp.get(
    "/images/<image_id>",
    summary="One stored image",
    responses={200: ImageView, 404: ErrorBody, **ERRORS},
)
def get_image(path: ImagePath, query: ImageQuery) -> Any:
    entry, holding = _find(path.image_id, query.collection)
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


class ThumbnailQuery(BaseModel):
    size: int = Field(
        256,
        description="Longest side in pixels: " + ", ".join(map(str, SIZES)),
        json_schema_extra={"enum": list(SIZES)},
    )
    collection: str | None = Field(None, pattern=COLLECTION_PATTERN)


@bp.get(
    "/images/<image_id>/thumbnail",
    summary="A JPEG thumbnail of an indexed image (cached; ETag)",
    responses={200: None, 304: None, 400: ErrorBody, 404: ErrorBody, **ERRORS},
)
def get_thumbnail(path: ImagePath, query: ThumbnailQuery) -> Any:
    if query.size not in SIZES:
        raise APIError(400, "bad_request", f"size must be one of {', '.join(map(str, SIZES))}")
    entry, _ = _find(path.image_id, query.collection)
    try:
        file = thumbnail(services().settings, entry, query.size)
    except ThumbnailError as exc:
        raise APIError(404, "not_found", f"no thumbnail of image {path.image_id}: {exc}") from exc
    response = send_file(file, mimetype="image/jpeg", conditional=True, etag=False, max_age=86400)
    response.set_etag(f"{path.image_id}-{query.size}")
    return response.make_conditional(request)
