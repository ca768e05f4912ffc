"""Thumbnails of indexed images, for the page: by image id only, never by a path given.

The id names a row of the catalog, and the catalog's stored path is read only
if it still lies under the roots jobs may read and still has the size it had
when indexed (a changed file is not the image the id names). Each size is
made once (JPEG drafted to scale, EXIF rotation applied) and cached under the
data directory; the id is the file's SHA-256, so the cached bytes never go
stale and the ETag is the id and size.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import Any

from PIL import Image, ImageOps

from visionnet.config.settings import Settings
from visionnet.core.paths import PathNotAllowedError, resolve_allowed
from visionnet.core.pathtext import to_os

SIZES = (64, 128, 256, 512)


class ThumbnailError(LookupError):
    """No thumbnail can be made: the reason, in words."""


def thumbnail(settings: Settings, entry: dict[str, Any], size: int) -> Path:
    """The cached JPEG thumbnail (longest side ``size``) of a catalog entry."""
    image_id = str(entry["id"])
    cache: Path = settings.data_path / "thumbs" / image_id[:2] / f"{image_id}-{size}.jpg"
    if cache.is_file():
        return cache
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
    cache.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=cache.parent, suffix=".part")
    with os.fdopen(fd, "wb") as out:
        rgb.save(out, "JPEG", quality=85)
    os.replace(tmp, cache)  # whole or absent, whichever process made it
    return cache
