"""Thumbnails of indexed images, for the page: by image id only, never by a path given.

The id names a row of the catalog, and the catalog's stored path is read only
if it still lies under the roots jobs may read and still has the size it had
when indexed (a changed file is not the image the id names). Each size is
made once (JPEG drafted to scale, EXIF rotation applied) and cached under the
data directory; the id is the file's SHA-256, so the cached bytes never go
stale and the ETag is the id and size.

An image indexed from a URL (its stored path is the URL) is never fetched
here: its sizes are made from the thumbnail the model worker cached when it
downloaded it, or from the kept download (``core/thumbs.py``).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from PIL import Image, ImageOps

from visionnet.config.settings import Settings
from visionnet.core.paths import PathNotAllowedError, resolve_allowed
from visionnet.core.pathtext import to_os
from visionnet.core.thumbs import download_path, make_thumbnail, save_atomic, thumbnail_path
from visionnet.core.urllists import is_url_path

SIZES = (64, 128, 256, 512)


class ThumbnailError(LookupError):
    """No thumbnail can be made: the reason, in words."""


def thumbnail(settings: Settings, entry: dict[str, Any], size: int) -> Path:
    """The cached JPEG thumbnail (longest side ``size``) of a catalog entry."""
    image_id = str(entry["id"])
    cache = thumbnail_path(settings.data_path, image_id, size)
    if cache.is_file():
        return cache
    if is_url_path(str(entry["path"])):
        return _from_download(settings.data_path, image_id, size, cache)
    try:
        # The stored path is its text form: a name that is not UTF-8 has its bytes back.
        source = resolve_allowed(to_os(entry["path"]), settings.readable_roots)
    except PathNotAllowedError as exc:
        raise ThumbnailError(f"the stored path is not readable here: {exc}") from exc
    try:
        if source.stat().st_size != entry["size"]:
            raise ThumbnailError("the file changed since it was indexed")
        with Image.open(source) as img:
            img.draft("RGB", (size, size))
            small = ImageOps.exif_transpose(img)
            small.thumbnail((size, size))
            rgb = small.convert("RGB")
    except FileNotFoundError as exc:
        raise ThumbnailError("the file is gone since it was indexed") from exc
    except (OSError, ValueError, Image.DecompressionBombError) as exc:
        raise ThumbnailError(f"the file cannot be decoded: {exc}") from exc
    save_atomic(cache, rgb)  # whole or absent, whichever process made it
    return cache


def _from_download(data: Path, image_id: str, size: int, cache: Path) -> Path:
    """A URL image's thumbnail from what its download left here: the kept bytes, or
    the worker's thumbnail (the smallest cached one at least ``size``, else the
    largest; a thumbnail is never enlarged)."""
    cached = [(s, p) for s in SIZES if (p := thumbnail_path(data, image_id, s)).is_file()]
    kept = download_path(data, image_id)
    larger = [p for s, p in cached if s >= size]
    source = kept if kept.is_file() else (larger[0] if larger else None)
    if source is None:
        if not cached:
            raise ThumbnailError("indexed from a URL, and no downloaded copy is kept here")
        return cached[-1][1]  # smaller than asked: the largest there is
    try:
        save_atomic(cache, make_thumbnail(source, size))
    except (OSError, ValueError, Image.DecompressionBombError) as exc:
        raise ThumbnailError(f"the downloaded copy cannot be decoded: {exc}") from exc
    return cache
