"""Reader stage: bytes in, content id and decoded RGB image out, errors per file.

A file that cannot be read or decoded becomes a ``FileError`` and the rest of
the batch goes on: one corrupt file must not fail a job of thousands.
"""

from __future__ import annotations

import hashlib
import io
from dataclasses import dataclass
from pathlib import Path

from PIL import Image, ImageOps, UnidentifiedImageError

from visionnet.core.paths import PathNotAllowedError, resolve_allowed


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

    def as_dict(self) -> dict[str, str]:
        return {"path": self.name, "error": self.error}


def read_path(path: str, roots: list[Path]) -> RawFile | FileError:
    try:
        resolved = resolve_allowed(path, roots)
        return RawFile(path, resolved.read_bytes())
    except PathNotAllowedError as exc:
        return FileError(path, str(exc))
    except OSError as exc:
        return FileError(path, f"cannot read file: {exc.strerror or exc}")


def decode(raw: RawFile, draft: int | None = None) -> Image.Image | FileError:
    """Decode to RGB, upright. ``draft``: the model's input side; a JPEG much larger is
    decoded at a reduced scale (libjpeg's DCT scaling, still at least ``draft`` on
    each side), which costs a fraction of a full decode for the same resized input.
    """
    out = decode_sized(raw, draft)
    return out if isinstance(out, FileError) else out[0]


# EXIF orientations that turn the picture a quarter: width and height swap.
_QUARTER_TURNS = frozenset({5, 6, 7, 8})


def decode_sized(
    raw: RawFile, draft: int | None = None
) -> tuple[Image.Image, tuple[int, int]] | FileError:
    """``decode``, and the picture's full upright size (a drafted decode is smaller)."""
    try:
        with Image.open(io.BytesIO(raw.data)) as opened:
            width, height = opened.size
            if opened.getexif().get(0x0112) in _QUARTER_TURNS:
                width, height = height, width
            if draft and opened.format == "JPEG":
                opened.draft("RGB", (draft, draft))
            upright = ImageOps.exif_transpose(opened)
            return upright.convert("RGB"), (width, height)
    except UnidentifiedImageError:
        return FileError(raw.name, "not an image format we read")
    except Image.DecompressionBombError:
        return FileError(raw.name, "too many pixels to decode safely")
    except (OSError, ValueError, SyntaxError) as exc:
        return FileError(raw.name, f"corrupt image: {exc}")
