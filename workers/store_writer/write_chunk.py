"""Index job, store writer side: the only task that writes vectors.

Its queue has exactly one consumer (Milvus Lite corrupts its log under two
writers). Writes are idempotent (content-hash ids, upserts, a chunk counted
once), so the task acks late and may be redelivered.
"""

from __future__ import annotations

import json
import logging
import time

from celery import shared_task
from pymilvus import MilvusException

from visionnet.core.jobs import ChunkReport, JobState
from visionnet.core.queues import WRITE_CHUNK
from visionnet.workers.store_writer.context import StoreTask
from visionnet.workers.vectorstore.milvus_store import CollectionMismatchError, Row
from visionnet.workers.vectorstore.wire import ChunkPayload, unpack

log = logging.getLogger(__name__)


@shared_task(
    name=WRITE_CHUNK,
    base=StoreTask,
    bind=True,
    acks_late=True,
    autoretry_for=(MilvusException, ConnectionError),
    retry_backoff=2,
    retry_backoff_max=60,
    max_retries=8,
)
def write_chunk(
    self: StoreTask,
    payload: ChunkPayload | None,
    *,
    job_id: str,
    chunk_no: int,
    collection: str,
) -> None:
    ctx = self.ctx
    if payload is None or not ctx.jobs.is_active(job_id):
        return
    start = time.perf_counter()
    new_ids: set[str] = set()
    if payload["ids"]:
        try:
            ctx.store.ensure_collection(collection, payload["dim"], payload["model"])
        except CollectionMismatchError as exc:
            ctx.jobs.transition(job_id, JobState.FAILED, error=str(exc))
            return
        # The single writer decides what is new, so racing chunks cannot double count;
        # the first decision is kept, so a re-run after a crash between the write and
        # the report counts the rows it stored as indexed, not as skipped.
        fresh = set(payload["ids"]) - ctx.store.existing_ids(collection, payload["ids"])
        decided = ctx.jobs.decide_once(job_id, chunk_no, json.dumps(sorted(fresh)))
        new_ids = set(json.loads(decided))
        vectors = unpack(payload["vectors"], payload["dim"])
        now = int(time.time())
        rows = [
            Row(
                id=cid,
                vector=vectors[i].tolist(),
                path=payload["paths"][i],
                size=payload["sizes"][i],
                model=payload["model"],
                indexed_at=now,
            )
            for i, cid in enumerate(payload["ids"])
            if cid in new_ids
        ]
        ctx.store.upsert(collection, rows)
    report = ChunkReport(
        chunk_no=chunk_no,
        indexed=len(new_ids),
        skipped=payload["skipped"] + len(payload["ids"]) - len(new_ids),
        failed=len(payload["errors"]),
        errors=payload["errors"],
    )
    ctx.jobs.record_chunk(job_id, report)
    log.info(
        "job %s chunk %d: wrote %d rows in %.3fs",
        job_id,
        chunk_no,
        len(new_ids),
        time.perf_counter() - start,
    )
