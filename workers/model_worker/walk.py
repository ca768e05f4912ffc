"""Listing the image files under a directory, lazily, for jobs of millions of files."""

from __future__ import annotations

import heapq
import os
from collections import Counter
from collections.abc import Generator, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

from visionnet.workers.model_worker.listing import ListingSpill


@dataclass
class WalkNotes:
    """What a walk saw besides images, per folder (OS form), for the job's record: the
    folders it could not read, with the reason, and the files it left out for their
    extension (counted when a folder is read from its start, so a resumed step does
    not count a folder again; the record counts each folder once, whatever re-reads
    it, see ``JobStore.record_walk``)."""

    unreadable: dict[str, str] = field(default_factory=dict)
    skipped: dict[str, Counter[str]] = field(default_factory=dict)

    def __bool__(self) -> bool:
        return bool(self.unreadable or self.skipped)


def iter_images(
    root: Path,
    extensions: Iterable[str],
    after: str | None = None,
    limit: int | None = None,
    spill: ListingSpill | None = None,
    notes: WalkNotes | None = None,
) -> Iterator[str]:
    """Yield image paths in a stable order, from after ``after``.

    The order: in each directory its files, sorted by name, then its
    subdirectories, sorted, each walked the same way. ``after`` resumes a walk
    where an earlier one stopped, without going into the directories it had
    finished: a planner of a million files walks in steps. ``limit``: at most
    this many paths are wanted (one step), so a directory is read in one pass
    keeping only its ``limit`` first names, never its whole listing (a folder of
    a million files costs a step a pass over it, not a million names in memory).
    ``spill``: where a resumed walk keeps the sorted listing of a folder larger
    than a step, so the steps after it read their slice instead of the folder
    (listing.py). A link that leads outside the roots is yielded too: the reader
    refuses it, so it is counted as a per-file error instead of vanishing from
    the job. ``notes``: where the folders it cannot read and the files it skips
    for their extension are noted (``WalkNotes``), so neither vanishes silently.
    """
    wanted = frozenset(e.lower() for e in extensions)
    mark: list[str] | None = None
    if after:
        mark = os.path.relpath(after, root).split(os.sep)
    budget = [limit if limit is not None else -1]  # -1: unbounded
    yield from _walk(str(root), wanted, mark, budget, spill, notes)


def _walk(
    dirpath: str,
    wanted: frozenset[str],
    mark: list[str] | None,
    budget: list[int],
    spill: ListingSpill | None,
    notes: WalkNotes | None,
) -> Iterator[str]:
    """``mark``: the resume point relative to ``dirpath`` (its last part a file), or None."""
    files_after = mark[0] if mark is not None and len(mark) == 1 else None
    # The mark lies in a subdirectory: this directory's files all come before it.
    skip_files = mark is not None and len(mark) > 1
    listing = None
    if spill is not None and mark is not None and budget[0] >= 0:
        # A resumed step: an earlier step read this folder already, and later
        # ones may too. A folder larger than a step is listed once for them all.
        listing = spill.listing(dirpath, wanted, min_names=budget[0])
    if listing is not None:
        subdirs = listing.subdirs
        if not skip_files:
            for name in listing.names_after(files_after):
                if budget[0] == 0:
                    return
                budget[0] -= 1
                yield os.path.join(dirpath, name)
    else:
        subdirs = yield from _read_folder(dirpath, wanted, files_after, skip_files, budget, notes)
    into = mark[0] if mark is not None and len(mark) > 1 else None
    for sub in subdirs:
        if into is not None and sub < into:
            continue  # finished by the earlier walk
        if budget[0] == 0:
            return
        rest = mark[1:] if mark is not None and sub == into else None
        yield from _walk(os.path.join(dirpath, sub), wanted, rest, budget, spill, notes)


def _read_folder(
    dirpath: str,
    wanted: frozenset[str],
    files_after: str | None,
    skip_files: bool,
    budget: list[int],
    notes: WalkNotes | None,
) -> Generator[str, None, list[str]]:
    """Yield the folder's image names after ``files_after`` (at most the budget's),
    reading it in one pass; return its subfolders, sorted."""
    subdirs: list[str] = []
    names: list[str] = []
    keep = budget[0]
    # Read from its start: the first time this walk reads it (a resumed step
    # re-reads a folder only past its mark).
    skipped: Counter[str] | None = (
        Counter() if notes is not None and not skip_files and files_after is None else None
    )
    try:
        with os.scandir(dirpath) as entries:
            for entry in entries:
                name = entry.name
                try:
                    is_dir = entry.is_dir(follow_symlinks=False)
                except OSError:
                    is_dir = False
                if is_dir:
                    subdirs.append(name)
                    continue
                ext = os.path.splitext(name)[1].lower()
                if ext not in wanted:
                    if skipped is not None and _is_file(entry):
                        skipped[ext or "(none)"] += 1
                elif not skip_files and (files_after is None or name > files_after):
                    names.append(name)
                    if keep >= 0 and len(names) > 4 * keep + 1024:
                        names = heapq.nsmallest(keep, names)  # bounded: only the first
    except OSError as exc:
        # Unreadable or gone: nothing to yield from it, but the job hears why.
        if notes is not None:
            notes.unreadable[dirpath] = f"cannot read folder: {exc.strerror or type(exc).__name__}"
        return []
    if skipped and notes is not None:
        notes.skipped[dirpath] = skipped
    for name in heapq.nsmallest(keep, names) if keep >= 0 else sorted(names):
        if budget[0] == 0:
            return sorted(subdirs)
        budget[0] -= 1
        yield os.path.join(dirpath, name)
    return sorted(subdirs)


def _is_file(entry: os.DirEntry[str]) -> bool:
    """A file (a link to one too), not a link to a folder, a FIFO or a dangling link."""
    try:
        return entry.is_file()
    except OSError:
        return False


def chunked(items: Iterable[str], size: int) -> Iterator[list[str]]:
    chunk: list[str] = []
    for item in items:
        chunk.append(item)
        if len(chunk) == size:
            yield chunk
            chunk = []
    if chunk:
        yield chunk
