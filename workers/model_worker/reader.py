"""Reader stage: bytes in, content id and decoded RGB image out, errors per file.

A file that cannot be read or decoded becomes a ``FileError`` and the rest of
the batch goes on: one corrupt file must not fail a job of thousands. Every
step on a file's bytes runs inside ``guard``, which turns any ``Exception`` a
decoder raises (Pillow 13's EXIF code raises ``struct.error``) into that file's
error; only the process dying escapes, and that has its own redelivery path.

Paths arrive in their text form (``visionnet.core.pathtext``) and are turned
back into the OS form only to open the file. Only regular files are read: a
FIFO would block ``open`` forever, a device would read without end.
"""

from __future__ import annotations

import errno
import hashlib
import io
import os
import stat
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import pillow_heif
from PIL import Image, ImageOps, UnidentifiedImageError

from visionnet.core.paths import PathNotAllowedError, resolve_allowed
from visionnet.core.pathtext import to_os

# HEIC/HEIF (a phone's photos): Pillow opens them once this plug-in is registered.
pillow_heif.register_heif_opener()

T = TypeVar("T")


@dataclass(frozen=True)
class RawFile:
    name: str
    data: bytes

    @property
    def content_id(self) -> str:
        """Vector ids derive from content, so a file stored twice is stored once."""
        return hashlib.sha256(self.data).hexdigest()


@dataclass(frozen=True)
class FileError:
    name: str
    error: str
    # Whether a retry of the job may succeed where it is not read from the error's
    # words (``core.jobs.is_permanent``): a download's, said by the downloader.
    retryable: bool | None = None

    def as_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"path": self.name, "error": self.error}
        if self.retryable is not None:
            out["retryable"] = self.retryable
        return out


class NotReadableError(Exception):
    """A file the reader refuses before reading it (its message is the file's error)."""


def guard(name: str, step: Callable[[], T], what: str = "corrupt image") -> T | FileError:
    """``step()``, or the file's error for any exception it raises.

    The error is the exception's type and message, never a traceback or a
    server path other than the file's own. ``what`` starts the message of an
    exception of a kind not named here (a decoder's surprise).
    """
    try:
        return step()
    except NotReadableError as exc:
        return FileError(name, str(exc))
    except PathNotAllowedError as exc:
        return FileError(name, str(exc))
    except UnidentifiedImageError:
        return FileError(name, "not an image format we read")
    except Image.DecompressionBombError:
        return FileError(name, "too many pixels to decode safely")
    except OSError as exc:
        if exc.filename is not None:  # an OS call on the file: its reason, not its path
            return FileError(name, f"cannot read file: {exc.strerror or type(exc).__name__}")
        return FileError(name, f"{what}: {exc}")
    except (ValueError, SyntaxError) as exc:
        return FileError(name, f"{what}: {exc}")
    except Exception as exc:
        return FileError(name, f"{what}: {type(exc).__name__}: {exc}")


def read_path(path: str, roots: list[Path], max_bytes: int | None = None) -> RawFile | FileError:
    """The file at ``path`` (text form) if it is a regular file under the roots and
    at most ``max_bytes`` long."""
    return guard(
        path, lambda: RawFile(path, _read_regular(path, roots, max_bytes)), "cannot read file"
    )


def _read_regular(path: str, roots: list[Path], max_bytes: int | None) -> bytes:
    resolved = resolve_allowed(to_os(path), roots)
    try:
        # O_NONBLOCK: opening a FIFO returns at once instead of waiting for a writer.
        fd = os.open(resolved, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
    except OSError as exc:
        if exc.errno == errno.ENXIO:  # a socket (or a FIFO opened for writing)
            raise NotReadableError("not a regular file") from None
        raise
    with os.fdopen(fd, "rb") as f:
        info = os.fstat(fd)
        # Checked on the open file, not the name: the entry cannot change in between.
        if not stat.S_ISREG(info.st_mode):
            raise NotReadableError("not a regular file")
        if max_bytes is None:
            return f.read()
        if info.st_size > max_bytes:
            raise NotReadableError(_too_large(info.st_size, max_bytes))
        data = f.read(max_bytes + 1)  # a file growing meanwhile stops at the cap too
        if len(data) > max_bytes:
            raise NotReadableError(_too_large(len(data), max_bytes))
        return data


def _too_large(size: int, cap: int) -> str:
    return f"file is larger than jobs.max_file_bytes ({size} > {cap} bytes)"


def decode(raw: RawFile, draft: int | None = None) -> Image.Image | FileError:
    """Decode to RGB, upright. ``draft``: the model's input side; a JPEG much larger is
    decoded at a reduced scale (libjpeg's DCT scaling, still at least ``draft`` on
    each side), which costs a fraction of a full decode for the same resized input.
    """
    out = decode_sized(raw, draft)
    return out if isinstance(out, FileError) else out[0]


# EXIF orientations that turn or mirror the picture (1: upright; others mean nothing),
# and those that turn it a quarter: width and height swap.
_TURNS = frozenset({2, 3, 4, 5, 6, 7, 8})
_QUARTER_TURNS = frozenset({5, 6, 7, 8})


def decode_sized(
    raw: RawFile, draft: int | None = None
) -> tuple[Image.Image, tuple[int, int]] | FileError:
    """``decode``, and the picture's full upright size (a drafted decode is smaller)."""
    return guard(raw.name, lambda: _decode_sized(raw.data, draft))


def _decode_sized(data: bytes, draft: int | None) -> tuple[Image.Image, tuple[int, int]]:
    # Not in a ``with``: closing a loaded image frees its pixels; the bytes are in memory.
    opened = Image.open(io.BytesIO(data))
    width, height = opened.size
    orientation = opened.getexif().get(0x0112)
    if orientation in _QUARTER_TURNS:
        width, height = height, width
    if draft and opened.format == "JPEG":
        opened.draft("RGB", (draft, draft))
    upright: Image.Image = opened
    if orientation in _TURNS:
        # Only then: exif_transpose reads the EXIF again and copies an upright picture
        # (a fifth of a small file's decode when nothing turns).
        upright = ImageOps.exif_transpose(opened)
    if upright.mode == "RGB":
        upright.load()
        return upright, (width, height)
    return upright.convert("RGB"), (width, height)
