"""The one check that decides whether a path may be read: under an allowed root."""

from __future__ import annotations

from pathlib import Path


class PathNotAllowedError(ValueError):
    pass


def resolve_allowed(path: str | Path, roots: list[Path]) -> Path:
    """Resolve symlinks and ``..`` first, then require the result under a root."""
    if not str(path) or "\x00" in str(path):
        raise PathNotAllowedError("path must be a non-empty string without NUL bytes")
    candidate = Path(path).expanduser()
    if not candidate.is_absolute():
        raise PathNotAllowedError(f"path must be absolute: {str(path)!r}")
    resolved = candidate.resolve()
    for root in roots:
        if resolved == root or resolved.is_relative_to(root):
            return resolved
    if not roots:
        raise PathNotAllowedError(
            "reading by path is disabled: no allowed roots are configured "
            "(set VISIONNET_ALLOWED_ROOTS)"
        )
    raise PathNotAllowedError(f"path {str(path)!r} is outside the allowed roots")
