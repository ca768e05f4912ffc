"""Job records on the stack's real Redis: chunk reports count once, completion is exact."""

from __future__ import annotations

import pytest

from tests.conftest import Stack
from visionnet.core.jobs import ChunkReport, JobState, JobStore
from visionnet.core.redis_conn import connect


@pytest.fixture
def jobs(stack: Stack) -> JobStore:
    return JobStore(connect(stack.redis_url), ttl_s=60, max_errors=2)


def test_redelivered_chunk_counts_once(jobs: JobStore) -> None:
    job = jobs.create("index", {"collection": "c"})
    jobs.add_planned(job, files=10, chunks=2)
    assert not jobs.record_chunk(job, ChunkReport(0, 4, 1, 0, []))
    assert not jobs.record_chunk(job, ChunkReport(0, 4, 1, 0, []))  # redelivered
    record = jobs.get(job)
    assert record is not None
    assert (record["indexed"], record["skipped"], record["done"]) == ("4", "1", "5")
    errors = [{"path": f"/x/{i}", "error": "bad"} for i in range(3)]
    # Planning is not finished: the last chunk alone cannot finish the job.
    assert not jobs.record_chunk(job, ChunkReport(1, 2, 0, 3, errors))
    assert jobs.state(job) == JobState.QUEUED
    assert jobs.finish_planning(job)
    assert jobs.state(job) == JobState.SUCCEEDED
    assert len(jobs.errors(job)) == 2  # capped, while the count stays exact
    assert jobs.get(job)["failed"] == "3"  # type: ignore[index]


def test_unknown_job_type_is_refused(jobs: JobStore) -> None:
    with pytest.raises(ValueError, match="unknown job type 'caption'"):
        jobs.create("caption", {})


def test_final_states_stick(jobs: JobStore) -> None:
    job = jobs.create("search", {})
    assert jobs.transition(job, JobState.CANCELLED)
    assert not jobs.transition(job, JobState.SUCCEEDED, result={"x": 1})
    assert jobs.state(job) == JobState.CANCELLED
    assert not jobs.is_active(job)
    assert jobs.transition("missing", JobState.RUNNING) is False


def test_writer_lock_is_kept_alive_and_exclusive(stack: Stack) -> None:
    import time

    from visionnet.workers.store_writer.writer_lock import WriterLockTakenError, hold_writer_lock

    client = connect(stack.redis_url)
    held = hold_writer_lock(client, wait_s=0, ttl_s=1.5, key="test-writer-lock")
    time.sleep(3.5)  # more than twice the TTL: only the refresh thread keeps it
    with pytest.raises(WriterLockTakenError, match="exactly one writer"):
        hold_writer_lock(client, wait_s=0.2, ttl_s=1.5, key="test-writer-lock")
    held.release()
    hold_writer_lock(client, wait_s=0, ttl_s=1.5, key="test-writer-lock").release()
