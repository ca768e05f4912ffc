"""Sorted listings of large folders, spilled to disk once per job.

A planner walks a folder in steps of a few thousand files. Without a listing
each step reads the whole folder again to find the names after its resume
point: for one folder of a million files that is a million entries per step,
about 1 s each, 245 times over (bench/RESULTS.md, "Planning 1,000,000 file
names"), on the model worker's own cores. The first resumed step in a large
folder now writes its sorted names to a file (in runs, merged, so memory stays
bounded by one run), and every later step finds its place by bisection and
reads only its slice.

A listing is a cache: keyed by the folder's path, the extensions and the
folder's inode and mtime (a folder whose files change gets a new listing), kept
under the job's own directory and removed when its walk ends (or swept with the
job's other files, datafiles.py, when a worker died mid-walk). A step that runs
on another host, or finds no listing, builds one there; a folder it cannot
spill (unwritable place, a name with a newline) is read as before.
"""

from __future__ import annotations

import bisect
import hashlib
import heapq
import logging
import os
import shutil
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

log = logging.getLogger(__name__)

# Names sorted in memory at a time while a listing is built (about 5 MB of str).
RUN_NAMES = 65_536


class _Unspillable(Exception):
    """A name the line format cannot hold (a newline in it)."""


@dataclass(frozen=True)
class Listing:
    """One folder's sorted image names and its sorted subfolders. The names are in
    a file (a large folder) or in memory (a small one, not kept)."""

    subdirs: list[str]
    files: Path | None = None
    names: list[str] | None = None

    def names_after(self, after: str | None) -> Iterator[str]:
        """The sorted names greater than ``after``, read from the file on demand."""
        if self.names is not None:
            yield from self.names[bisect.bisect_right(self.names, after) if after else 0 :]
            return
        assert self.files is not None
        with self.files.open("rb") as f:
            f.seek(_first_line_after(f, after) if after is not None else 0)
            for line in f:
                yield os.fsdecode(line[:-1])


def _first_line_after(f: BinaryIO, after: str) -> int:
    """Offset of the first line whose name sorts after ``after``: a bisection over
    byte offsets, each probe reading on to the start of the next line."""

    def line_start(at: int) -> int:  # the first line starting at or after ``at``
        f.seek(max(at - 1, 0))
        if at > 0:
            f.readline()
        return f.tell()

    size = f.seek(0, os.SEEK_END)
    lo, hi = 0, size
    while lo < hi:
        mid = (lo + hi) // 2
        start = line_start(mid)
        if start < size and os.fsdecode(f.readline()[:-1]) <= after:
            lo = mid + 1
        else:
            hi = mid
    return line_start(lo)


class ListingSpill:
    """Builds and finds folder listings under ``where`` (one job's directory)."""

    def __init__(self, where: Path, run_names: int = RUN_NAMES) -> None:
        self.where = where
        self.run_names = run_names

    def listing(self, dirpath: str, wanted: frozenset[str], min_names: int) -> Listing | None:
        """The folder's listing: found, or read now. A folder of more than
        ``min_names`` images gets a file that later steps find; a smaller one is
        returned in memory. None: it cannot be spilled (the caller reads it
        directly)."""
        try:
            st = os.stat(dirpath)
        except OSError:
            return None
        prefix = hashlib.sha256(
            f"{dirpath}\0{','.join(sorted(wanted))}".encode("utf-8", "surrogateescape")
        ).hexdigest()[:24]
        key = f"{prefix}-{st.st_dev}-{st.st_ino}-{st.st_mtime_ns}"
        files, dirs = self.where / f"{key}.names", self.where / f"{key}.dirs"
        if files.exists():
            try:
                return Listing(list(_read_iter(dirs)), files=files)
            except OSError:
                pass  # a half-removed listing: build it again
        try:
            return self._build(dirpath, wanted, min_names, prefix, files, dirs)
        except (OSError, _Unspillable) as e:
            log.info("no listing of %s (%s): read directly", dirpath, e)
            return None

    def _build(
        self,
        dirpath: str,
        wanted: frozenset[str],
        min_names: int,
        prefix: str,
        files: Path,
        dirs: Path,
    ) -> Listing:
        started = time.perf_counter()
        names: list[str] = []
        subdirs: list[str] = []
        runs: list[Path] = []
        tag = f"{os.getpid()}-{time.monotonic_ns()}"
        files_tmp, dirs_tmp = (
            files.with_name(f"{files.name}.{tag}"),
            dirs.with_name(f"{dirs.name}.{tag}"),
        )
        try:
            with os.scandir(dirpath) as entries:
                for entry in entries:
                    try:
                        is_dir = entry.is_dir(follow_symlinks=False)
                    except OSError:
                        is_dir = False
                    if is_dir:
                        subdirs.append(entry.name)
                    elif os.path.splitext(entry.name)[1].lower() in wanted:
                        if "\n" in entry.name:
                            raise _Unspillable(f"a newline in {entry.name!r}")
                        names.append(entry.name)
                        if len(names) == self.run_names:
                            if not runs:
                                self._prepare(prefix)
                            runs.append(self.where / f"{prefix}.run{len(runs)}.{tag}")
                            _write_lines(runs[-1], sorted(names))
                            names = []
            subdirs.sort()
            if not runs and len(names) <= min_names:
                return Listing(subdirs, names=sorted(names))  # small: not kept
            if not runs:
                self._prepare(prefix)
            _write_lines(dirs_tmp, subdirs)
            os.replace(dirs_tmp, dirs)
            names.sort()
            readers = [_read_iter(run) for run in runs]
            _write_lines(files_tmp, heapq.merge(names, *readers))
            os.replace(files_tmp, files)  # complete: now visible
        finally:
            for run in runs:
                run.unlink(missing_ok=True)
            files_tmp.unlink(missing_ok=True)
            dirs_tmp.unlink(missing_ok=True)
        log.info(
            "listed %s in %.1f s (%d runs) for the rest of its walk",
            dirpath,
            time.perf_counter() - started,
            len(runs),
        )
        return Listing(subdirs, files=files)

    def _prepare(self, prefix: str) -> None:
        """Make the job's directory; drop this folder's older listings (the folder
        changed since)."""
        self.where.mkdir(parents=True, exist_ok=True)
        for old in self.where.glob(f"{prefix}-*"):
            old.unlink(missing_ok=True)

    def remove(self) -> None:
        """The walk ended (or its job did): its listings go."""
        shutil.rmtree(self.where, ignore_errors=True)


def _write_lines(path: Path, names: Iterable[str]) -> None:
    with path.open("wb", buffering=1 << 20) as f:
        f.writelines(os.fsencode(name) + b"\n" for name in names)


def _read_iter(path: Path) -> Iterator[str]:
    with path.open("rb", buffering=1 << 20) as f:
        for line in f:
            yield os.fsdecode(line[:-1])
