"""Index job, store writer side: the only task that writes vectors to Milvus Lite.

Its queue has exactly one consumer (Milvus Lite corrupts its log under two
writers). Each message names one staged chunk; the writer commits it together
with every other staged chunk it can see (``milvus.write_group_chunks``), so
one flush serves many chunks when the writer is behind. Writes are idempotent
(content-hash ids, upserts, a chunk counted once), so the task acks late and
may be redelivered; a chunk already committed by an earlier group finds
nothing left to do.
"""

from __future__ import annotations

import logging
from typing import Any

from celery import shared_task

from visionnet.core.queues import WRITE_CHUNK
from visionnet.workers.commit import commit_chunks, fail_staged
from visionnet.workers.store_writer.context import StoreTask
from visionnet.workers.vectorstore.staging import StagedChunk

log = logging.getLogger(__name__)


class WriteChunkTask(StoreTask):
    def give_up(self, reason: str, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
        """The writer died on this chunk every time: its rows count as failed, the job goes on."""
        chunk = self.ctx.staging.get(kwargs["job_id"], kwargs["chunk_no"])
        if chunk is not None:
            fail_staged(self.ctx, chunk, reason)
        return None


@shared_task(name=WRITE_CHUNK, base=WriteChunkTask, bind=True, acks_late=True)
def write_chunk(
    self: WriteChunkTask,
    staged: bool | None,
    *,
    job_id: str,
    chunk_no: int,
    collection: str,
) -> None:
    ctx = self.ctx
    if not staged:
        return  # the job was not active when the chunk came up, or its model failed
    own = ctx.staging.get(job_id, chunk_no)
    if own is None:
        return  # committed with an earlier group (or expired with its job)
    group: list[StagedChunk] = [own]
    # A redelivered message commits its chunk alone: if one staged chunk kills
    # the writer, it cannot take the chunks it was grouped with down with it.
    if getattr(self.request, "starts", 1) <= 1:
        for other_job, other_no in ctx.staging.oldest(ctx.settings.milvus.write_group_chunks):
            if (other_job, other_no) == (job_id, chunk_no):
                continue
            other = ctx.staging.get(other_job, other_no)
            if other is None:
                ctx.staging.remove(other_job, other_no)  # expired: drop its index entry
                continue
            group.append(other)
            if len(group) >= ctx.settings.milvus.write_group_chunks:
                break
    commit_chunks(ctx, group, flush=ctx.settings.milvus_is_lite)
