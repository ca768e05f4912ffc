"""Deleting stored images: a write, so it runs where writes run (the single store
writer with Milvus Lite; any model worker when they write to a real server).

Idempotent, so redelivery after a crash is safe: deleting rows that are gone
already deletes nothing, and the job counts what the store held when it ran.
"""

from __future__ import annotations

import logging
from typing import Any

from celery import shared_task

from visionnet.core.jobs import JobState
from visionnet.core.jobtypes import DeleteParams, job_type
from visionnet.workers.store_writer.context import StoreTask
from visionnet.workers.vectorstore.filters import FilterError, prefix_range
from visionnet.workers.vectorstore.milvus_store import CollectionNotFoundError

log = logging.getLogger(__name__)

# Ids looked up per query when deleting by id.
LOOKUP_BATCH = 1024


def _stored(task: StoreTask, collection: str, ids: list[str]) -> list[str]:
    found: set[str] = set()
    for start in range(0, len(ids), LOOKUP_BATCH):
        found |= task.ctx.store.existing_ids(collection, ids[start : start + LOOKUP_BATCH])
    return sorted(found)


@shared_task(name=job_type("delete").task, base=StoreTask, bind=True, acks_late=True)
def delete_images(
    self: StoreTask,
    *,
    job_id: str,
    params: dict[str, Any],
    ids: list[str] | None = None,
    path_prefix: str | None = None,
) -> None:
    ctx = self.ctx
    collection = DeleteParams.model_validate(params).collection
    if not ctx.jobs.start(job_id):
        return
    try:
        if ids is not None:
            targets = _stored(self, collection, ids)
            requested = len(ids)
        else:
            assert path_prefix is not None
            expr = prefix_range("path", path_prefix)
            targets = ctx.store.matching_ids(collection, expr)
            requested = len(targets)
            ctx.jobs.set_fields(job_id, total=requested)
        # Without a flush Milvus Lite could bring deleted rows back after a crash; a
        # real server logs the delete itself (as with upserts).
        ctx.store.delete_ids(collection, targets, flush=not ctx.settings.milvus.direct_writes)
        ctx.catalog.remove(collection, targets)
    except (CollectionNotFoundError, FilterError) as exc:
        ctx.jobs.transition(job_id, JobState.FAILED, error=str(exc))
        return
    ctx.jobs.set_progress(job_id, requested)
    log.info("job %s: deleted %d images from %s", job_id, len(targets), collection)
    result: dict[str, Any] = {
        "collection": collection,
        "deleted": len(targets),
        "not_found": requested - len(targets),
    }
    if path_prefix is not None:
        result["path_prefix"] = path_prefix
    ctx.jobs.transition(job_id, JobState.SUCCEEDED, result=result)
