"""Files that jobs leave under the data directory: export files, archive uploads and
the folders they unpack to. The web writes uploads and serves exports; workers
write the rest; both see the same data directory (shared storage across hosts).

Each lives as long as its job's records (``result_ttl_s``), then the next job of
its kind sweeps it away; unpacked archives may be kept (``jobs.keep_archives``),
since stored vectors point at their files.
"""

from __future__ import annotations

import shutil
import time
from pathlib import Path

from visionnet.config.settings import Settings


def export_path(settings: Settings, job_id: str) -> Path:
    return settings.data_path / "exports" / f"{job_id}.parquet"


def archive_upload_path(settings: Settings, job_id: str) -> Path:
    return settings.data_path / "uploads" / f"{job_id}.archive"


def archive_root(settings: Settings, job_id: str) -> Path:
    return settings.data_path / "archives" / job_id


def listings_path(settings: Settings, job_id: str) -> Path:
    """Sorted listings of large folders, kept while the job's walk goes on."""
    return settings.data_path / "listings" / job_id


def url_list_upload_path(settings: Settings, job_id: str, name: str) -> Path:
    """An uploaded URL list, until the job's planner has read it; its extension kept
    where it names a format (a CSV without one would read as text)."""
    suffix = Path(name).suffix.lower()
    known = suffix if suffix in (".csv", ".txt", ".parquet", ".pq") else ""
    return settings.data_path / "uploads" / f"{job_id}.urls{known}"


def url_list_path(settings: Settings, job_id: str) -> Path:
    """A URL list as the planner read it (one entry a line), kept while its steps go on."""
    return settings.data_path / "urllists" / f"{job_id}.tsv"


def sweep(folder: Path, ttl_s: int) -> None:
    """Remove entries of ``folder`` older than ``ttl_s``: their jobs are gone."""
    if not folder.is_dir():
        return
    cutoff = time.time() - ttl_s
    for old in folder.iterdir():
        try:
            if old.stat().st_mtime >= cutoff:
                continue
            if old.is_dir() and not old.is_symlink():
                shutil.rmtree(old, ignore_errors=True)
            else:
                old.unlink(missing_ok=True)
        except FileNotFoundError:
            continue  # another sweep got there first
