"""Index job, store writer side: the only task that writes vectors.

Its queue has exactly one consumer (Milvus Lite corrupts its log under two
writers). Writes are idempotent (content-hash ids, upserts, a chunk counted
once), so the task acks late and may be redelivered.
"""

from __future__ import annotations

import logging
import time
from typing import Any

from celery import shared_task

from visionnet.core.jobs import ChunkReport, JobState
from visionnet.core.queues import WRITE_CHUNK
from visionnet.workers.store_writer.context import StoreTask
from visionnet.workers.vectorstore.milvus_store import CollectionMismatchError, Row
from visionnet.workers.vectorstore.wire import ChunkPayload, unpack

log = logging.getLogger(__name__)


class WriteChunkTask(StoreTask):
    def give_up(self, reason: str, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
        """The writer died on this chunk every time: its rows count as failed, the job goes on."""
        payload: ChunkPayload | None = args[0] if args else kwargs.get("payload")
        if payload is None:
            return None
        errors = payload["errors"] + [{"path": path, "error": reason} for path in payload["paths"]]
        report = ChunkReport(
            chunk_no=kwargs["chunk_no"],
            indexed=0,
            skipped=payload["skipped"],
            failed=len(errors),
            errors=errors,
        )
        self.ctx.jobs.record_chunk(kwargs["job_id"], report)
        return None


@shared_task(name=WRITE_CHUNK, base=WriteChunkTask, bind=True, acks_late=True)
def write_chunk(
    self: WriteChunkTask,
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
        new_ids = ctx.jobs.decide_once(job_id, chunk_no, sorted(fresh))
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
        ctx.jobs.release_claims(job_id, sorted(new_ids))
    stages = dict(payload.get("timings", {}))
    stages["write"] = round(time.perf_counter() - start, 4)
    report = ChunkReport(
        chunk_no=chunk_no,
        indexed=len(new_ids),
        skipped=payload["skipped"] + len(payload["ids"]) - len(new_ids),
        failed=len(payload["errors"]),
        errors=payload["errors"],
        stages=stages,
    )
    ctx.jobs.record_chunk(job_id, report)
    log.info(
        "job %s chunk %d: wrote %d rows in %.3fs",
        job_id,
        chunk_no,
        len(new_ids),
        time.perf_counter() - start,
    )
