"""Turning a job record into the API's job document."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

from visionnet.core.jobs import FINAL_STATES, JobState, JobStore
from visionnet.web.progress import eta_seconds, files_per_second


def _iso(value: str | None) -> str | None:
    if not value:
        return None
    return datetime.fromtimestamp(float(value), tz=UTC).isoformat()


def _float(value: str | None) -> float | None:
    return float(value) if value else None


def _stages(record: dict[str, str]) -> dict[str, float]:
    """Worker seconds per stage, summed over the chunks reported so far (stages overlap)."""
    return {
        key.removeprefix("stage_s:"): round(float(value), 3)
        for key, value in sorted(record.items())
        if key.startswith("stage_s:")
    }


def progress(record: dict[str, str], jobs: JobStore, *, live: bool = True) -> dict[str, Any]:
    """Counts that only grow and end at total; files/s over the last minute and the ETA.

    ``live`` reads the chunk reports' samples (one more Redis read); a list of
    jobs gives the average rate since the start instead.
    """
    total, done = int(record.get("total", 0)), int(record.get("done", 0))
    finished = _float(record.get("finished_at"))
    samples = jobs.rate_samples(record["id"]) if live and finished is None else []
    rate = files_per_second(samples, _float(record.get("started_at")), finished, done)
    out: dict[str, Any] = {
        "total": total,
        "done": done,
        "failed": int(record.get("failed", 0)),
        "files_per_s": None if rate is None else round(rate, 2),
        "eta_s": None
        if finished is not None
        else _round(eta_seconds(rate, total, done, planning=_planning(record))),
    }
    if record["type"] == "index":
        out["indexed"] = int(record.get("indexed", 0))
        out["skipped"] = int(record.get("skipped", 0))
        out["moved"] = int(record.get("moved", 0))
        out["stage_seconds"] = _stages(record)
        out["workers"] = _workers(record)
    return out


def _workers(record: dict[str, str]) -> dict[str, int]:
    """Chunks embedded so far per worker node (several hosts can share one job)."""
    return {
        key.removeprefix("worker:"): int(value)
        for key, value in sorted(record.items())
        if key.startswith("worker:")
    }


def _planning(record: dict[str, str]) -> bool:
    """An index job's total grows until its planner has walked the whole folder."""
    return record["type"] == "index" and record.get("planned") != "1"


def _round(value: float | None) -> float | None:
    return None if value is None else round(value, 1)


def job_document(record: dict[str, str], jobs: JobStore, *, live: bool = True) -> dict[str, Any]:
    state = JobState(record["state"])
    result: dict[str, Any] | None = json.loads(record["result"]) if "result" in record else None
    if record["type"] == "index" and state in FINAL_STATES:
        errors = jobs.errors(record["id"])
        failed = int(record.get("failed", 0))
        result = {
            "total": int(record.get("total", 0)),
            "indexed": int(record.get("indexed", 0)),
            "skipped": int(record.get("skipped", 0)),
            # Of the skipped: found at a new path (the old one gone), stored path updated.
            "moved": int(record.get("moved", 0)),
            "failed": failed,
            "errors": errors,
            "errors_truncated": failed > len(errors),
            # Files the walk left out for their extension, by extension ("(none)": no
            # extension): a folder of unsupported files is not an empty success.
            "skipped_by_extension": {
                key.removeprefix("skipped_ext:"): int(value)
                for key, value in sorted(record.items())
                if key.startswith("skipped_ext:")
            },
            "collection": json.loads(record["params"]).get("collection"),
            # Where the time went, summed over chunks (worker seconds, stages overlap).
            "stage_seconds": _stages(record),
            "workers": _workers(record),
        }
    return {
        "id": record["id"],
        "type": record["type"],
        "state": state.value,
        "progress": progress(record, jobs, live=live),
        "result": result,
        "error": record.get("error"),
        "created_at": _iso(record.get("created_at")),
        "started_at": _iso(record.get("started_at")),
        "finished_at": _iso(record.get("finished_at")),
    }
