"""Cached thumbnails and kept downloads under the data directory, by content id.

The web makes a file's thumbnails on demand from the file (web/thumbnails.py).
An image indexed from a URL has no file the web may read, and the web never
fetches: the model worker writes one thumbnail when it downloads the image,
at ``sources.thumbnail_size``, in the same cache, and the web makes the other
sizes from it (or from the kept download, ``sources.keep_downloads``). Ids are
content hashes, so a cached file never goes stale; writes are atomic (a
temporary file renamed), so two processes making the same one cannot tear it.
"""

from __future__ import annotations

import io
import os
import tempfile
from pathlib import Path

from PIL import Image, ImageOps


def thumbnail_path(data: Path, image_id: str, size: int) -> Path:
    """The cached JPEG of ``image_id`` whose longest side is (at most) ``size``."""
    return data / "thumbs" / image_id[:2] / f"{image_id}-{size}.jpg"


def download_path(data: Path, image_id: str) -> Path:
    """A URL image's full download, kept when ``sources.keep_downloads`` is on."""
    return data / "downloads" / image_id[:2] / image_id


def make_thumbnail(source: Path | bytes, size: int) -> Image.Image:
    """The picture upright, its longest side at most ``size`` (JPEGs drafted to scale)."""
    opened = Image.open(io.BytesIO(source) if isinstance(source, bytes) else source)
    with opened as img:
        img.draft("RGB", (size, size))
        small = ImageOps.exif_transpose(img)
        small.thumbnail((size, size))
        return small.convert("RGB")


def save_atomic(target: Path, write: object) -> None:
    """``write`` (bytes, or a PIL image saved as JPEG) to ``target``, whole or not at all."""
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=target.parent, suffix=".part")
    try:
        with os.fdopen(fd, "wb") as out:
            if isinstance(write, bytes):
                out.write(write)
            else:
                assert isinstance(write, Image.Image)
                write.save(out, "JPEG", quality=85)
        os.replace(tmp, target)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def write_thumbnail(data: Path, image_id: str, image: bytes, size: int) -> Path:
    """The thumbnail of a downloaded image, made unless it is cached already."""
    target = thumbnail_path(data, image_id, size)
    if not target.is_file():
        save_atomic(target, make_thumbnail(image, size))
    return target


def keep_download(data: Path, image_id: str, image: bytes) -> Path:
    target = download_path(data, image_id)
    if not target.is_file():
        save_atomic(target, image)
    return target
