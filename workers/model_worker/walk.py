"""Listing the image files under a directory, lazily, for jobs of millions of files."""

from __future__ import annotations

import os
from collections.abc import Iterable, Iterator
from pathlib import Path


def iter_images(root: Path, extensions: Iterable[str], after: str | None = None) -> Iterator[str]:
    """Yield image paths in a stable order (depth first, names sorted), from after ``after``.

    ``after`` resumes a walk where an earlier one stopped, without listing the
    directories it had finished: a planner of a million files walks in steps.
    A link that leads outside the roots is yielded too: the reader refuses it,
    so it is counted as a per-file error instead of vanishing from the job.
    """
    wanted = {e.lower() for e in extensions}
    mark = _walk_key(root, after) if after else None
    for dirpath, dirnames, filenames in os.walk(root, followlinks=False):
        dirnames.sort()
        here = _walk_key(root, dirpath, is_dir=True)
        if mark is not None:
            # Skip the subdirectories the earlier walk had finished: all of their
            # files sort before the mark (and the mark is not inside them).
            dirnames[:] = [d for d in dirnames if not (*here, (1, d)) < mark[: len(here) + 1]]
        for name in sorted(filenames):
            if os.path.splitext(name)[1].lower() not in wanted:
                continue
            if mark is not None and (*here, (0, name)) <= mark:
                continue
            yield os.path.join(dirpath, name)


def _walk_key(root: Path, path: str, *, is_dir: bool = False) -> tuple[tuple[int, str], ...]:
    """A path's place in walk order: a directory's files (0) come before its subdirectories (1)."""
    rel = os.path.relpath(path, root)
    parts = [] if rel == "." else rel.split(os.sep)
    if is_dir:
        return tuple((1, p) for p in parts)
    return (*((1, p) for p in parts[:-1]), (0, parts[-1]))


def chunked(items: Iterable[str], size: int) -> Iterator[list[str]]:
    chunk: list[str] = []
    for item in items:
        chunk.append(item)
        if len(chunk) == size:
            yield chunk
            chunk = []
    if chunk:
        yield chunk
