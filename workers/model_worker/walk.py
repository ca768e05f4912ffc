"""Listing the image files under a directory, lazily, for jobs of millions of files."""

from __future__ import annotations

import os
from collections.abc import Iterable, Iterator
from pathlib import Path


def iter_images(root: Path, extensions: Iterable[str]) -> Iterator[str]:
    """Yield image paths in a stable order.

    A link that leads outside the roots is yielded too: the reader refuses it,
    so it is counted as a per-file error instead of vanishing from the job.
    """
    wanted = {e.lower() for e in extensions}
    for dirpath, dirnames, filenames in os.walk(root, followlinks=False):
        dirnames.sort()
        for name in sorted(filenames):
            if os.path.splitext(name)[1].lower() not in wanted:
                continue
            yield os.path.join(dirpath, name)


def chunked(items: Iterable[str], size: int) -> Iterator[list[str]]:
    chunk: list[str] = []
    for item in items:
        chunk.append(item)
        if len(chunk) == size:
            yield chunk
            chunk = []
    if chunk:
        yield chunk
