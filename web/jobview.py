"""Turning a job record into the API's job document."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

from visionnet.core.jobs import FINAL_STATES, JobState, JobStore


def _iso(value: str | None) -> str | None:
    if not value:
        return None
    return datetime.fromtimestamp(float(value), tz=UTC).isoformat()


def job_document(record: dict[str, str], jobs: JobStore) -> dict[str, Any]:
    state = JobState(record["state"])
    result: dict[str, Any] | None = json.loads(record["result"]) if "result" in record else None
    if record["type"] == "index" and state in FINAL_STATES:
        errors = jobs.errors(record["id"])
        failed = int(record.get("failed", 0))
        result = {
            "total": int(record.get("total", 0)),
            "indexed": int(record.get("indexed", 0)),
            "skipped": int(record.get("skipped", 0)),
            "failed": failed,
            "errors": errors,
            "errors_truncated": failed > len(errors),
            "collection": json.loads(record["params"]).get("collection"),
            # Where the time went, summed over chunks (worker seconds, stages overlap).
            "stage_seconds": {
                key.removeprefix("stage_s:"): round(float(value), 3)
                for key, value in sorted(record.items())
                if key.startswith("stage_s:")
            },
        }
    return {
        "id": record["id"],
        "type": record["type"],
        "state": state.value,
        "progress": {
            "total": int(record.get("total", 0)),
            "done": int(record.get("done", 0)),
            "failed": int(record.get("failed", 0)),
        },
        "result": result,
        "error": record.get("error"),
        "created_at": _iso(record.get("created_at")),
        "started_at": _iso(record.get("started_at")),
        "finished_at": _iso(record.get("finished_at")),
    }
