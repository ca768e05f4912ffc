"""Where export jobs leave their files: the worker writes, the web serves (same data dir)."""

from __future__ import annotations

import time
from pathlib import Path

from visionnet.config.settings import Settings


def export_path(settings: Settings, job_id: str) -> Path:
    return settings.data_path / "exports" / f"{job_id}.parquet"


def sweep(folder: Path, ttl_s: int) -> None:
    """Remove exports older than job records: their jobs are gone."""
    cutoff = time.time() - ttl_s
    for old in folder.glob("*.parquet*"):
        if old.stat().st_mtime < cutoff:
            old.unlink(missing_ok=True)
