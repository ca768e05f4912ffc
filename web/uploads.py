"""Checks on uploaded files before anything is queued: only images get through."""

from __future__ import annotations

import io
import logging
import os
import shutil
import tarfile
import zipfile
from pathlib import Path
from typing import Any

from PIL import Image, UnidentifiedImageError
from werkzeug.datastructures import FileStorage

from visionnet.web.errors import APIError

ARCHIVE_BLOCK = 1 << 20
log = logging.getLogger(__name__)


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


def save_archive_upload(upload: FileStorage, target: Path) -> Path:
    """Stream an uploaded archive to ``target`` (never whole in memory); 400 unless a zip or tar.

    The worker unpacks it (and checks every entry); here only the kind is checked,
    so a wrong file is refused before anything is queued.
    """
    name = upload.filename or "archive"
    target.parent.mkdir(parents=True, exist_ok=True)
    if not _move_spooled(upload, target):
        with target.open("wb") as out:
            shutil.copyfileobj(upload.stream, out, ARCHIVE_BLOCK)
    if target.stat().st_size == 0:
        target.unlink()
        raise APIError(400, "bad_request", f"file {name!r} is empty")
    try:
        ok = zipfile.is_zipfile(target) or tarfile.is_tarfile(target)
    except (OSError, tarfile.TarError, EOFError):
        ok = False
    if not ok:
        target.unlink()
        raise APIError(400, "bad_request", f"file {name!r} is not a zip or tar archive")
    return target


def save_url_list_upload(upload: FileStorage, target: Path) -> Path:
    """Stream an uploaded URL list to ``target``; the caller checks what it holds."""
    target.parent.mkdir(parents=True, exist_ok=True)
    if not _move_spooled(upload, target):
        with target.open("wb") as out:
            shutil.copyfileobj(upload.stream, out, ARCHIVE_BLOCK)
    return target


def _move_spooled(upload: FileStorage, target: Path) -> bool:
    """Move the part's spooled file (web/spooling.py) to ``target``: the bytes are
    written once. False where the part is in memory or on another file system."""
    stream: Any = upload.stream
    spooled = getattr(stream, "name", None)
    if not isinstance(spooled, str) or not os.path.isabs(spooled):
        return False
    stream.flush()
    try:
        os.replace(spooled, target)
    except OSError:
        return False  # another device: copied instead
    log.info("archive upload %s moved into place (%d bytes)", target.name, target.stat().st_size)
    return True
