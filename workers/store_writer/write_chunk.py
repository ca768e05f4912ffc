"""Index job, store writer side: the only task that writes vectors to Milvus Lite.

Its queue has exactly one consumer (Milvus Lite corrupts its log under two
writers). Each message names one staged chunk; the writer commits it together
with every other staged chunk it can see (``milvus.write_group_chunks``), so
one upsert serves many chunks when the writer is behind. Milvus Lite's
collections are flushed when it pays, not per commit (``flush_due.py``).
Writes are idempotent (content-hash ids, upserts, a chunk counted once), so
the task acks late and may be redelivered; a chunk already committed by an
earlier group finds nothing left to do.
"""

from __future__ import annotations

import logging
from typing import Any

from celery import shared_task

from visionnet.core.jobs import JobState
from visionnet.core.queues import WRITE_CHUNK
from visionnet.workers.base import WorkerContext
from visionnet.workers.chunk_errors import JOB_LEVEL_ERRORS, failure_reason
from visionnet.workers.commit import CommitStats, commit_chunks, fail_staged
from visionnet.workers.store_writer.context import StoreTask
from visionnet.workers.store_writer.flush_due import flush_as_due
from visionnet.workers.vectorstore.staging import StagedChunk

log = logging.getLogger(__name__)


class WriteChunkTask(StoreTask):
    def give_up(self, reason: str, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
        """The writer died on this chunk every time: its rows count as failed, the job goes on."""
        chunk = self.ctx.staging.get(kwargs["job_id"], kwargs["chunk_no"])
        if chunk is not None:
            fail_staged(self.ctx, chunk, reason)
        return None

    def settle_failure(self, exc: BaseException, kwargs: dict[str, Any]) -> None:
        """Its chunk could not be written (after its retries): its files fail, not its job."""
        if isinstance(exc, JOB_LEVEL_ERRORS):
            self.ctx.jobs.transition(kwargs["job_id"], JobState.FAILED, error=str(exc))
            return
        chunk = self.ctx.staging.get(kwargs["job_id"], kwargs["chunk_no"])
        if chunk is not None:
            fail_staged(self.ctx, chunk, failure_reason(exc, None))


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
    stats = commit_group(ctx, group)
    if ctx.settings.milvus_is_lite:
        # Milvus Lite's log keeps the rows: flushed when it pays (flush_due.py).
        flush_as_due(self, stats)


def commit_group(ctx: WorkerContext, group: list[StagedChunk]) -> CommitStats:
    """Commit ``group`` together; if that fails, chunk by chunk.

    One bad chunk (a value Milvus refuses) must not fail the chunks it was
    grouped with, nor stay staged to fail the next group. A chunk is bad when
    it failed twice, in the group and then alone, while the store answered
    after each: its files fail (its job goes on). When the store does not
    answer (an outage, a restart), the error is raised for the task to retry,
    and the chunks not yet committed stay staged.
    """
    try:
        return commit_chunks(ctx, group)
    except Exception as exc:
        if not _store_answers(ctx):
            raise
        log.warning("a group of %d chunk(s) failed (%r); committing them one by one",
                    len(group), exc)  # fmt: skip
    done: list[CommitStats] = []
    for chunk in group:
        try:
            done.append(commit_chunks(ctx, [chunk]))
        except Exception as exc:
            if not _store_answers(ctx):
                raise
            log.error("job %s chunk %d could not be written; its files fail",
                      chunk.job_id, chunk.chunk_no, exc_info=exc)  # fmt: skip
            fail_staged(ctx, chunk, failure_reason(exc, None))
    return CommitStats.merged(done)


def _store_answers(ctx: WorkerContext) -> bool:
    """Whether the vector store is up: an error while it answers is the chunk's own."""
    try:
        ctx.store.names()
    except Exception:
        return False
    return True
