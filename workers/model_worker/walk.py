"""Listing the image files under a directory, lazily, for jobs of millions of files."""

from __future__ import annotations

import os
from collections.abc import Iterable, Iterator
from pathlib import Path

from visionnet.core.paths import PathNotAllowedError, resolve_allowed


def iter_images(root: Path, extensions: Iterable[str], roots: list[Path]) -> Iterator[str]:
    """Yield image paths in a stable order; links that lead outside the roots are dropped."""
    wanted = {e.lower() for e in extensions}
    for dirpath, dirnames, filenames in os.walk(root, followlinks=False):
        dirnames.sort()
        for name in sorted(filenames):
            if os.path.splitext(name)[1].lower() not in wanted:
                continue
            path = os.path.join(dirpath, name)
            if os.path.islink(path):
                try:
                    resolve_allowed(path, roots)
                except PathNotAllowedError:
                    continue
            yield path


def chunked(items: Iterable[str], size: int) -> Iterator[list[str]]:
    chunk: list[str] = []
    for item in items:
        chunk.append(item)
        if len(chunk) == size:
            yield chunk
            chunk = []
    if chunk:
        yield chunk
