"""A bad index chunk fails only its own files: on a private Redis and a real Milvus Lite.

No worker runs here: the store writer's commit (``commit_group``), the chunk
failure and split paths and the writer lock's fence are called as the tasks
call them, against a real ``redis-server`` and Milvus Lite in this process.
The end-to-end halves (a killed pool process, a stolen lock, a time limit)
are in tests/test_faults.py.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import numpy as np
import pytest
from pymilvus import MilvusClient

from tests.helpers import lite_worker_context
from visionnet.core.jobs import ChunkReport
from visionnet.core.redis_conn import connect
from visionnet.workers.base import WorkerContext
from visionnet.workers.commit import commit_chunks
from visionnet.workers.model_worker.chunk_failure import SPLIT_BASE, fail_files, halves_of
from visionnet.workers.store_writer.fence import Fence
from visionnet.workers.store_writer.write_chunk import commit_group
from visionnet.workers.store_writer.writer_lock import hold_writer_lock
from visionnet.workers.vectorstore.milvus_store import LABEL_LEN
from visionnet.workers.vectorstore.staging import StagedChunk

DIM = 8


@pytest.fixture(scope="module")
def ctx(private_redis: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[WorkerContext]:
    """The store writer's context on the private Redis and a Milvus Lite database file."""
    tmp = tmp_path_factory.mktemp("chunk-failures")
    yield lite_worker_context(private_redis, tmp)


def new_job(ctx: WorkerContext, chunks: dict[int, int]) -> str:
    """A running index job planned as ``chunks`` (chunk number: files)."""
    job_id = ctx.jobs.create("index", {"collection": "c"})
    assert ctx.jobs.start(job_id)
    for chunk_no, files in chunks.items():
        ctx.jobs.plan_chunk(job_id, chunk_no, files)
    ctx.jobs.finish_planning(job_id)
    return job_id


def staged(
    job_id: str, chunk_no: int, ids: list[str], collection: str, label: str = ""
) -> StagedChunk:
    rng = np.random.default_rng(len(ids) + chunk_no)
    return StagedChunk(
        job_id=job_id,
        chunk_no=chunk_no,
        collection=collection,
        ids=ids,
        paths=[f"/photos/{i}.jpg" for i in ids],
        sizes=[1] * len(ids),
        vectors=rng.standard_normal((len(ids), DIM)).astype(np.float32),
        model="m",
        skipped=0,
        errors=[],
        widths=[1] * len(ids),
        heights=[1] * len(ids),
        labels=[label] * len(ids),
        label_scores=[0.5] * len(ids),
    )


def stored_count(ctx: WorkerContext, collection: str) -> int:
    client = MilvusClient(uri=ctx.settings.effective_milvus_uri)
    client.load_collection(collection)
    rows = client.query(collection, filter="", output_fields=["count(*)"])
    return int(rows[0]["count(*)"])


def result(ctx: WorkerContext, job_id: str) -> tuple[str, int, int, int, int]:
    job = ctx.jobs.get(job_id)
    assert job is not None
    return (
        job["state"],
        int(job.get("indexed", 0)),
        int(job.get("skipped", 0)),
        int(job.get("failed", 0)),
        int(job.get("done", 0)),
    )


def ids(prefix: str, n: int) -> list[str]:
    return [f"{prefix}{uuid.uuid4().hex[:16]}" for _ in range(n)]


def test_a_bad_chunk_in_a_group_fails_only_its_own_files(ctx: WorkerContext) -> None:
    """Job A's chunk holds a label longer than the field takes (Milvus refuses it):
    grouped with job B's chunks, B's commit and A fails only that chunk's files."""
    collection = f"group_{uuid.uuid4().hex[:8]}"
    job_a = new_job(ctx, {0: 3})
    job_b = new_job(ctx, {0: 2, 1: 2})
    bad = staged(job_a, 0, ids("a", 3), collection, label="x" * (LABEL_LEN + 1))
    good = [staged(job_b, 0, ids("b", 2), collection), staged(job_b, 1, ids("b", 2), collection)]
    group = [good[0], bad, good[1]]
    for chunk in group:
        ctx.staging.put(chunk)

    stats = commit_group(ctx, group)

    assert result(ctx, job_b) == ("succeeded", 4, 0, 0, 4)
    # What the writer's flush policy reads: B's rows, and B ended by this commit.
    assert stats.written == {collection: 4}
    assert stats.ended == {collection}
    # The bad chunk's own job goes on, and ends with those files failed.
    assert result(ctx, job_a) == ("succeeded", 0, 0, 3, 3)
    errors = ctx.jobs.errors(job_a)
    assert sorted(e["path"] for e in errors) == sorted(bad.paths)
    reason = "MilvusException: VARCHAR field 'label' value length 257 exceeds max_length=256"
    assert [e["error"] for e in errors] == [reason] * 3
    assert stored_count(ctx, collection) == 4
    # Nothing stays staged to fail the next group.
    assert all(ctx.staging.get(c.job_id, c.chunk_no) is None for c in group)


def test_two_jobs_putting_one_id_into_one_upsert_store_it_once(ctx: WorkerContext) -> None:
    """The same files indexed by two jobs into one collection, committed in one group."""
    collection = f"dupes_{uuid.uuid4().hex[:8]}"
    shared = ids("s", 3)
    job_a = new_job(ctx, {0: 3})
    job_b = new_job(ctx, {0: 4})
    own = ids("o", 1)
    group = [staged(job_a, 0, shared, collection), staged(job_b, 0, shared + own, collection)]
    for chunk in group:
        ctx.staging.put(chunk)

    stats = commit_chunks(ctx, group)

    assert stats.rows == 4  # one row per id in the upsert
    assert stored_count(ctx, collection) == 4
    # New for the first chunk; for the other, as if the first had been committed before it.
    assert result(ctx, job_a) == ("succeeded", 3, 0, 0, 3)
    assert result(ctx, job_b) == ("succeeded", 1, 3, 0, 4)


def test_a_failed_chunk_counts_once_and_the_job_goes_on(ctx: WorkerContext) -> None:
    job_id = new_job(ctx, {0: 2, 1: 2})
    ctx.staging.put(staged(job_id, 0, ids("f", 2), "never"))  # staged before it failed
    for _ in range(2):  # the failure path run twice (a redelivered task)
        fail_files(ctx, job_id, 0, ["/p/a.jpg", "/p/b.jpg"], "timed out after 5 s")
    assert result(ctx, job_id) == ("running", 0, 0, 2, 2)
    assert ctx.staging.get(job_id, 0) is None  # never written
    ctx.jobs.record_chunk(job_id, ChunkReport(1, 2, 0, 0, []))
    assert result(ctx, job_id) == ("succeeded", 2, 0, 2, 4)
    assert [e["error"] for e in ctx.jobs.errors(job_id)] == ["timed out after 5 s"] * 2


def test_split_chunk_replaces_one_planned_chunk_by_two_once(ctx: WorkerContext) -> None:
    job_id = new_job(ctx, {0: 4, 1: 4})
    halves = halves_of(0)
    assert halves is not None
    assert ctx.jobs.split_chunk(job_id, 0, halves) == 1
    assert ctx.jobs.split_chunk(job_id, 0, halves) == 2  # a re-run: same halves, no recount
    record = ctx.jobs.get(job_id)
    assert record is not None and (record["chunks_total"], record["total"]) == ("3", "8")
    ctx.jobs.record_chunk(job_id, ChunkReport(0, 4, 0, 0, []))  # a late report of the whole
    ctx.jobs.record_chunk(job_id, ChunkReport(1, 4, 0, 0, []))
    ctx.jobs.record_chunk(job_id, ChunkReport(halves[0], 2, 0, 0, []))
    assert result(ctx, job_id) == ("running", 6, 0, 0, 6)
    ctx.jobs.record_chunk(job_id, ChunkReport(halves[1], 1, 0, 1, []))
    assert result(ctx, job_id) == ("succeeded", 7, 0, 1, 8)
    # A chunk that reported already is not split.
    other = new_job(ctx, {0: 4})
    ctx.jobs.record_chunk(other, ChunkReport(0, 4, 0, 0, []))
    assert ctx.jobs.split_chunk(other, 0, halves) == 0


def test_split_chunk_numbers_never_collide() -> None:
    """Down to single files of a 4,096-file chunk, across planner chunks 0..99."""
    seen: set[int] = set()
    for planned in range(100):
        level = [planned]
        for _depth in range(12):
            nxt = []
            for no in level:
                halves = halves_of(no)
                assert halves is not None
                nxt.extend(halves)
            level = nxt
            seen.update(level)
    assert len(seen) == 100 * (2**13 - 2)
    assert min(seen) >= SPLIT_BASE


def test_a_writer_that_lost_its_lock_is_fenced_until_it_takes_it_back(
    ctx: WorkerContext,
) -> None:
    """A second writer takes the lock; the first holds it again with the same token."""
    client = connect(ctx.settings.effective_redis_url)
    key = f"test-lock-{uuid.uuid4().hex}"
    first = hold_writer_lock(client, wait_s=1, ttl_s=3, key=key)
    fence = Fence(client, first.token, key)
    try:
        assert fence.held()
        client.delete(key)  # it expired during a stall...
        second = hold_writer_lock(client, wait_s=1, ttl_s=3, key=key)  # ...and was taken
        assert not fence.held()
        assert not fence.wait_until_held(max_wait_s=0.3, poll_s=0.05)
        second.release()
        # The first writer's refresher (every ttl/3 s) takes it back, with its token.
        assert fence.wait_until_held(max_wait_s=30, poll_s=0.05)
        assert client.get(key) == first.token
    finally:
        first.release()
    assert client.get(key) is None
