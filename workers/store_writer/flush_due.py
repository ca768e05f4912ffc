"""When the store writer flushes a Milvus Lite collection: when it pays, not after every chunk.

Why not after every chunk: milvus-lite appends each upsert to its write-ahead
log before it answers and replays that log when it starts, so a row it
acknowledged survives the death of any process unflushed (the fault tests kill
it mid-job and count). A flush seals the memory table into a segment file and
builds that segment's HNSW index, and every few small segments are merged and
indexed again. Flushed after every chunk, the embedded server used about four
times the CPU of the upserts themselves, on the cores the models need
(bench/RESULTS.md, "The per-file cost of the index path").

Why flush at all: rows not yet flushed are searched by a scan of the memory
table, slower as it grows. So a collection is flushed once
``milvus.lite_flush_rows`` rows were written to it, when an index job that
wrote to it ends (its searches come next), and when it has not been written
for ``milvus.lite_flush_idle_s`` (a cancelled job; a job whose planner, not
its writer, reported last): a delayed task on the store queue, which only the
writer consumes, so a flush never runs beside another write.

The counts live in the writer's process, which flushes what it left when it
stops warmly. A writer that starts knows nothing of what an earlier one left
unflushed (killed): a collection it knows nothing of counts as unflushed.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterable
from typing import Any

from celery import shared_task
from celery.signals import worker_process_shutdown

from visionnet.core.queues import FLUSH_COLLECTION
from visionnet.workers.base import WorkerContext, process_context
from visionnet.workers.commit import CommitStats
from visionnet.workers.store_writer.context import StoreTask

log = logging.getLogger(__name__)


class UnflushedRows:
    """Rows written to each collection since its last flush, by this writer process."""

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._rows: dict[str, int] = {}
        self._last_write: dict[str, float] = {}
        self._timers: set[str] = set()

    def wrote(self, written: dict[str, int]) -> None:
        now = self._clock()
        for collection, rows in written.items():
            self._rows[collection] = self._rows.get(collection, 0) + rows
            self._last_write[collection] = now

    def pending(self, collection: str) -> bool:
        """Whether it may hold unflushed rows (one this process never wrote may)."""
        return self._rows.get(collection, 1) > 0

    def due(self, stats: CommitStats, threshold: int) -> list[str]:
        """The collections to flush now, after the commit ``stats`` tells of."""
        touched = set(stats.written) | stats.ended
        return sorted(
            c
            for c in touched
            if self.pending(c)
            and (threshold == 0 or c in stats.ended or self._rows.get(c, 0) >= threshold)
        )

    def unflushed(self) -> list[str]:
        """The collections this process wrote and did not flush since."""
        return sorted(c for c, rows in self._rows.items() if rows > 0)

    def flushed(self, collection: str) -> None:
        self._rows[collection] = 0

    def forget(self, collection: str) -> None:
        """A dropped collection: nothing of it is left to flush."""
        self._rows[collection] = 0
        self._last_write.pop(collection, None)

    def needs_timer(self, collections: Iterable[str]) -> list[str]:
        """Of ``collections``, those left unflushed with no delayed flush waiting; they
        count as having one from now on."""
        out = [c for c in collections if self._rows.get(c, 0) > 0 and c not in self._timers]
        self._timers.update(out)
        return out

    def timer_fired(self, collection: str, idle_s: float) -> float:
        """A delayed flush came: seconds to wait still (written meanwhile), or 0: flush now."""
        self._timers.discard(collection)
        last = self._last_write.get(collection)
        if last is None:
            return 0.0
        wait = idle_s - (self._clock() - last)
        if wait > 0:
            self._timers.add(collection)
        return max(0.0, wait)


# The writer's counts: one per process (the store queue's single consumer).
UNFLUSHED = UnflushedRows()


def flush_as_due(task: StoreTask, stats: CommitStats) -> list[str]:
    """After a commit: flush the collections due, and give each collection left
    unflushed a delayed flush. Returns those flushed."""
    ctx = task.ctx
    settings = ctx.settings.milvus
    UNFLUSHED.wrote(stats.written)
    flushed = []
    for collection in UNFLUSHED.due(stats, settings.lite_flush_rows):
        if flush(ctx, collection):
            flushed.append(collection)
    for collection in UNFLUSHED.needs_timer(stats.written):
        schedule_flush(task, collection, settings.lite_flush_idle_s)
    return flushed


def flush(ctx: WorkerContext, collection: str) -> bool:
    """Flush ``collection`` if it still exists; whether it did."""
    if not ctx.store.has_collection(collection):
        UNFLUSHED.forget(collection)
        return False
    start = time.perf_counter()
    ctx.store.flush(collection)
    UNFLUSHED.flushed(collection)
    log.info("flushed collection %s in %.3fs", collection, time.perf_counter() - start)
    return True


@shared_task(name=FLUSH_COLLECTION, base=StoreTask, bind=True, acks_late=True)
def flush_collection(self: StoreTask, *, collection: str) -> None:
    """The delayed flush: now if the collection went unwritten for
    ``milvus.lite_flush_idle_s``, else once more that long after its last write.
    Idempotent: a flush of a flushed collection seals nothing."""
    idle_s = self.ctx.settings.milvus.lite_flush_idle_s
    wait = UNFLUSHED.timer_fired(collection, idle_s)
    if wait > 0:
        schedule_flush(self, collection, wait)
        return
    if UNFLUSHED.pending(collection):
        flush(self.ctx, collection)


@worker_process_shutdown.connect
def _flush_before_exit(**_: Any) -> None:
    """A warm stop: seal what is left unflushed, so the next start replays no log.
    (A killed writer leaves it to the log, and a later flush.)"""
    if UNFLUSHED.unflushed():
        flush_all_pending(process_context(WorkerContext))


def flush_all_pending(ctx: WorkerContext) -> list[str]:
    """Flush every collection this process wrote and has not flushed; returns those
    flushed. A store that cannot be reached is logged, not raised: its log keeps
    the rows, and the next writer flushes them."""
    flushed = []
    for collection in UNFLUSHED.unflushed():
        try:
            if flush(ctx, collection):
                flushed.append(collection)
        except Exception as exc:  # the store went first
            log.warning("collection %s not flushed before exit: %r", collection, exc)
    return flushed


def schedule_flush(task: StoreTask, collection: str, seconds: float) -> None:
    task.app.signature(FLUSH_COLLECTION, kwargs={"collection": collection}).apply_async(
        countdown=seconds
    )
