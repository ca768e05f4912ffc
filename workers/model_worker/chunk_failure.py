"""An index chunk that cannot be completed fails its own files, never its whole job.

Two ways a chunk ends without its vectors:

- Its task raised an error that no retry changes (after its retries, if it was
  transient; Celery's soft time limit, ``jobs.chunk_time_limit_s``): each of
  its files gets the reason (the error's type and message) and the job goes on.
- Its process died on every delivery (a decoder that crashes in C): the chunk
  is split in halves, each sent again as a chunk of its own, until the file
  that kills the process stands alone and only that file fails.

A whole job fails only for job-level causes: the collection holds another
model's vectors, or the model cannot be loaded. The chunk is counted once
however often this runs (``JobStore.record_chunk`` counts a chunk number once,
``JobStore.split_chunk`` splits a chunk once).
"""

from __future__ import annotations

import logging
from typing import Any

from visionnet.core.jobs import ChunkReport, JobState
from visionnet.core.queues import EMBED_CHUNK, WRITE_CHUNK
from visionnet.workers.base import WorkerContext
from visionnet.workers.chunk_errors import JOB_LEVEL_ERRORS, failure_reason
from visionnet.workers.model_worker.context import ModelTask

log = logging.getLogger(__name__)

# Numbers of split chunks: far above any planner's (which count from 0), so they
# never collide. A planner's chunk c is node 1 of its own binary tree; node k's
# halves are nodes 2k and 2k+1, numbered SPLIT_BASE + c * 2**NODE_BITS + node.
# 2**48 + c * 2**16 stays exact in Redis' Lua (doubles) for c below 2**36.
SPLIT_BASE = 1 << 48
NODE_BITS = 16


def halves_of(chunk_no: int) -> tuple[int, int] | None:
    """The chunk numbers of ``chunk_no``'s two halves (None: split too deep to number)."""
    if chunk_no >= SPLIT_BASE:
        planned, node = divmod(chunk_no - SPLIT_BASE, 1 << NODE_BITS)
    else:
        planned, node = chunk_no, 1
    left = 2 * node
    if left + 1 >= 1 << NODE_BITS:
        return None
    first = SPLIT_BASE + (planned << NODE_BITS) + left
    return first, first + 1


def fail_files(
    ctx: WorkerContext, job_id: str, chunk_no: int, paths: list[str], reason: str
) -> None:
    """Count chunk ``chunk_no`` as its ``paths`` failed with ``reason`` (once)."""
    # A run that staged its vectors before it failed: they must not be written now.
    ctx.staging.remove(job_id, chunk_no)
    errors = [{"path": path, "error": reason} for path in paths]
    ctx.jobs.record_chunk(job_id, ChunkReport(chunk_no, 0, 0, len(paths), errors))


def settle_embed_failure(task: ModelTask, exc: BaseException, kwargs: dict[str, Any]) -> None:
    """``embed_chunk`` raised ``exc`` for good: its files fail, unless the job itself must."""
    ctx = task.ctx
    job_id = kwargs["job_id"]
    if isinstance(exc, JOB_LEVEL_ERRORS):
        ctx.jobs.transition(job_id, JobState.FAILED, error=str(exc))
        return
    limits = getattr(task.request, "timelimit", None) or (None, None)
    soft = limits[1] or task.soft_time_limit
    reason = failure_reason(exc, soft)
    log.error(
        "job %s chunk %s: %d files failed: %s",
        job_id,
        kwargs["chunk_no"],
        len(kwargs["paths"]),
        reason,
        exc_info=exc,
    )
    fail_files(ctx, job_id, kwargs["chunk_no"], list(kwargs["paths"]), reason)


def split_or_fail(task: ModelTask, kwargs: dict[str, Any], reason: str) -> bool:
    """At the delivery cap: send the chunk again as two halves; one file alone fails.

    Returns False: nothing is staged for the chain's writer (each half has its own).
    """
    ctx = task.ctx
    job_id, chunk_no, paths = kwargs["job_id"], kwargs["chunk_no"], list(kwargs["paths"])
    halves = halves_of(chunk_no) if len(paths) > 1 else None
    if halves is None:
        fail_files(ctx, job_id, chunk_no, paths, reason)
        return False
    outcome = ctx.jobs.split_chunk(job_id, chunk_no, halves)
    if outcome not in (1, 2):
        return False  # reported already, or the job is gone
    ctx.staging.remove(job_id, chunk_no)  # split: never written as a whole
    mid = len(paths) // 2
    for number, part in zip(halves, (paths[:mid], paths[mid:]), strict=True):
        send_chunk(task, {**kwargs, "chunk_no": number, "paths": part})
    log.warning(
        "job %s chunk %d: its process died on every run; sent again as chunks %d and %d "
        "of %d and %d files",
        job_id,
        chunk_no,
        halves[0],
        halves[1],
        mid,
        len(paths) - mid,
    )
    return False


def send_chunk(task: ModelTask, kwargs: dict[str, Any]) -> None:
    """Queue one chunk as the planner does: embed, then (Milvus Lite) the store writer."""
    embed = task.app.signature(EMBED_CHUNK, kwargs=kwargs)
    if task.ctx.settings.milvus.direct_writes:
        embed.apply_async()
        return
    write = task.app.signature(
        WRITE_CHUNK,
        kwargs={
            "job_id": kwargs["job_id"],
            "chunk_no": kwargs["chunk_no"],
            "collection": kwargs["collection"],
        },
    )
    (embed | write).apply_async()
