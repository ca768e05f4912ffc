"""Commit embedded chunks: one upsert per collection, then one report per chunk.

Used by the store writer (Milvus Lite: the only writer) and, with a real Milvus
server and `milvus.direct_writes`, by the model workers themselves.

The order is what makes a crash harmless at any point:
1. decide, per chunk and once (``JobStore.decide_once``), which of its rows are new;
2. upsert every chunk's new rows (flushing is not done here: the store writer's
   policy, store_writer/flush_due.py, flushes Milvus Lite; a real server needs none);
3. record each chunk's report, then drop its staged data.
A crash before 3 leaves the staged data and the queue messages in place; the
chunk is committed again (upserts by content id) and counted by the first
decision, so nothing is lost or counted twice.
"""

from __future__ import annotations

import logging
import time
from collections import Counter, defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field

from visionnet.core.jobs import ChunkReport, JobState
from visionnet.workers.base import WorkerContext
from visionnet.workers.moves import apply_moves
from visionnet.workers.vectorstore.milvus_store import CollectionMismatchError, Row
from visionnet.workers.vectorstore.staging import StagedChunk

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class CommitStats:
    chunks: int
    rows: int
    seconds: float
    # New rows per collection, and the collections of the jobs whose last chunk this
    # was: what the store writer's flush policy (store_writer/flush_due.py) counts.
    written: dict[str, int] = field(default_factory=dict)
    ended: frozenset[str] = frozenset()

    @staticmethod
    def merged(parts: Sequence[CommitStats]) -> CommitStats:
        """Commits made one after another (a group's chunks one by one), as one."""
        return CommitStats(
            sum(p.chunks for p in parts),
            sum(p.rows for p in parts),
            sum(p.seconds for p in parts),
            dict(sum((Counter(p.written) for p in parts), Counter())),
            frozenset().union(*(p.ended for p in parts)),
        )


def commit_chunks(ctx: WorkerContext, chunks: Sequence[StagedChunk]) -> CommitStats:
    """Store and report ``chunks`` (of any jobs and collections) together."""
    start = time.perf_counter()
    live: list[StagedChunk] = []
    for chunk in chunks:
        if ctx.jobs.is_active(chunk.job_id):
            live.append(chunk)
        else:
            ctx.staging.remove(chunk.job_id, chunk.chunk_no)  # cancelled or gone: drop it

    # 1. Decide once per chunk what is new; refuse chunks whose collection does not fit.
    new_ids: dict[str, set[str]] = {}
    # Per collection, one row per id: two jobs that index the same file into one
    # collection must not put its id twice into one upsert (Milvus Lite keeps
    # one of them, a real Milvus server both). ``taken``: the ids an earlier chunk
    # of this group decided to write; for a chunk of another job they count as
    # skipped, as if that chunk had been committed first.
    rows: dict[str, dict[str, Row]] = defaultdict(dict)
    taken: dict[str, set[str]] = defaultdict(set)
    now = int(time.time())
    accepted: list[StagedChunk] = []
    for chunk in live:
        if chunk.ids:
            try:
                ctx.store.ensure_collection(
                    chunk.collection,
                    chunk.dim,
                    chunk.model,
                    chunk.provenance,
                    may_mix=chunk.may_mix,
                )
                ctx.collections.created(
                    chunk.collection,
                    chunk.model,
                    chunk.dim,
                    vectors=ctx.store.made_by(chunk.collection),
                )
            except CollectionMismatchError as exc:
                ctx.jobs.transition(chunk.job_id, JobState.FAILED, error=str(exc))
                ctx.staging.remove(chunk.job_id, chunk.chunk_no)
                continue
            fresh = set(chunk.ids) - ctx.store.existing_ids(chunk.collection, chunk.ids)
            fresh -= taken[chunk.collection]
            decided = ctx.jobs.decide_once(chunk.job_id, chunk.chunk_no, sorted(fresh))
            taken[chunk.collection] |= decided
        else:
            decided = set()
        new_ids[chunk.member] = decided
        collection_rows = rows[chunk.collection]
        for i, cid in enumerate(chunk.ids):
            if cid in decided and cid not in collection_rows:
                collection_rows[cid] = Row(
                    id=cid,
                    vector=chunk.vectors[i].tolist(),
                    model=chunk.model,
                    indexed_at=now,
                    **chunk.metadata(i),
                )
        accepted.append(chunk)

    # 2. One upsert per collection for the whole group, then the same rows into the
    # catalog the web reads.
    for collection, by_id in rows.items():
        ctx.store.upsert(collection, list(by_id.values()), flush=False)
        ctx.catalog.put(collection, {cid: r.as_dict() for cid, r in by_id.items()})
    # Files found at a new path (old one gone): only their stored path changes.
    apply_moves(ctx, accepted)
    seconds = time.perf_counter() - start

    # 3. Report each chunk, with its share of the commit time, then drop its staged data.
    ended: set[str] = set()
    for chunk in accepted:
        decided = new_ids[chunk.member]
        ctx.jobs.release_claims(chunk.job_id, sorted(decided))
        stages = dict(chunk.timings)
        stages["write"] = round(seconds / max(1, len(accepted)), 4)
        report = ChunkReport(
            chunk_no=chunk.chunk_no,
            indexed=len(decided),
            skipped=chunk.skipped + len(chunk.ids) - len(decided),
            failed=len(chunk.errors),
            errors=chunk.errors,
            stages=stages,
            worker=chunk.worker,
            moved=len(chunk.moves),
        )
        if ctx.jobs.record_chunk(chunk.job_id, report):
            ended.add(chunk.collection)
        ctx.staging.remove(chunk.job_id, chunk.chunk_no)
    written = Counter({collection: len(by_id) for collection, by_id in rows.items()})
    for chunk in accepted:
        written[chunk.collection] += len(chunk.moves)  # rewritten rows: writes too
    stats = CommitStats(
        len(accepted),
        sum(len(r) for r in rows.values()),
        seconds,
        {c: n for c, n in written.items() if n},
        frozenset(ended),
    )
    log.info(
        "committed %d chunk(s), %d new rows, in %.3fs", stats.chunks, stats.rows, stats.seconds
    )
    return stats


def fail_staged(ctx: WorkerContext, chunk: StagedChunk, reason: str) -> None:
    """A staged chunk that cannot be written: its rows count as failed, the job goes on.

    Counted once however often this runs (``record_chunk``). The rows it had
    claimed are released, so a copy of one of its files in a later chunk of the
    job is written there.
    """
    decided = ctx.jobs.decide_once(chunk.job_id, chunk.chunk_no, [])
    ctx.jobs.release_claims(chunk.job_id, sorted(decided))
    errors = chunk.errors + [{"path": path, "error": reason} for path in chunk.paths]
    report = ChunkReport(
        chunk_no=chunk.chunk_no,
        indexed=0,
        skipped=chunk.skipped,
        failed=len(errors),
        errors=errors,
    )
    ctx.jobs.record_chunk(chunk.job_id, report)
    ctx.staging.remove(chunk.job_id, chunk.chunk_no)
