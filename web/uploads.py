"""Checks on uploaded files before anything is queued: only images get through."""

from __future__ import annotations

import io

from PIL import Image, UnidentifiedImageError
from werkzeug.datastructures import FileStorage

from visionnet.web.errors import APIError


def read_image_upload(upload: FileStorage) -> bytes:
    """The file's bytes, or a 400 naming the file if Pillow cannot identify an image."""
    name = upload.filename or "upload"
    data: bytes = upload.read()
    if not data:
        raise APIError(400, "bad_request", f"file {name!r} is empty")
    try:
        with Image.open(io.BytesIO(data)) as img:
            img.verify()
    except UnidentifiedImageError as exc:
        # Pillow's message names an in-memory object (<_io.BytesIO at 0x…>): say it in words.
        raise APIError(400, "bad_request", f"file {name!r} is not an image format we read") from exc
    except Image.DecompressionBombError as exc:
        raise APIError(
            400, "bad_request", f"file {name!r} has too many pixels to decode safely"
        ) from exc
    except (OSError, ValueError, SyntaxError) as exc:
        raise APIError(400, "bad_request", f"file {name!r} is not a readable image: {exc}") from exc
    return data
