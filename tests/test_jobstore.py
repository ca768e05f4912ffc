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
    assert jobs.plan_chunk(job, 0, 6) and jobs.plan_chunk(job, 1, 4)
    assert jobs.plan_chunk(job, 0, 6)  # a redelivered planner plans chunk 0 again
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


def test_writer_lock_lost_in_a_stall_is_taken_back(stack: Stack) -> None:
    """A writer whose lock expired while it stalled (longer than the TTL) takes it
    again at its next refresh when it is free, so a second writer is still refused."""
    import time

    from visionnet.workers.store_writer.writer_lock import WriterLockTakenError, hold_writer_lock

    client = connect(stack.redis_url)
    held = hold_writer_lock(client, wait_s=0, ttl_s=1.5, key="test-lost-lock")
    client.delete("test-lost-lock")  # what an expiry during a stall leaves
    time.sleep(1.5)  # three refresh intervals (TTL / 3)
    assert client.exists("test-lost-lock")
    with pytest.raises(WriterLockTakenError, match="exactly one writer"):
        hold_writer_lock(client, wait_s=0.2, ttl_s=1.5, key="test-lost-lock")
    held.release()
    assert not client.exists("test-lost-lock")


def test_progress_writes_never_recreate_a_missing_record(jobs: JobStore) -> None:
    assert not jobs.set_progress("0" * 32, 5, 1)
    assert not jobs.plan_chunk("0" * 32, 0, 10)
    assert not jobs.finish_planning("0" * 32)
    assert jobs.get("0" * 32) is None  # no stateless hash left behind


def test_progress_refreshes_the_lifetime(stack: Stack) -> None:
    client = connect(stack.redis_url)
    short = JobStore(client, ttl_s=5)
    job = short.create("classify", {})
    client.expire(JobStore.key(job), 1)
    assert short.set_progress(job, 1)
    assert client.ttl(JobStore.key(job)) > 1
    assert short.plan_chunk(job, 0, 3)
    assert client.ttl(JobStore.key(job) + ":planned") > 1


def test_a_chunk_decision_is_kept_across_reruns(jobs: JobStore) -> None:
    job = jobs.create("index", {"collection": "c"})
    assert jobs.decide_once(job, 3, ["a", "b"]) == {"a", "b"}
    # The re-run sees the rows as stored already; the first decision still counts.
    assert jobs.decide_once(job, 3, []) == {"a", "b"}
    assert jobs.decide_once(job, 4, []) == set()


def test_a_copy_in_two_chunks_is_written_and_counted_by_one(jobs: JobStore) -> None:
    """Chunk 1 decides to write "x", dies before writing; chunk 2 holds a copy of "x"."""
    job = jobs.create("index", {"collection": "c"})
    assert jobs.decide_once(job, 1, ["x", "y"]) == {"x", "y"}
    assert jobs.decide_once(job, 2, ["x", "z"]) == {"z"}  # "x" is chunk 1's to write
    assert jobs.decide_once(job, 1, []) == {"x", "y"}  # chunk 1 redelivered: still its
    jobs.release_claims(job, ["x", "y"])  # written: the store answers for them now
    assert jobs.decide_once(job, 5, ["y"]) == {"y"}  # (only if the store had lost it)


def test_deliveries_are_counted_per_task_run(jobs: JobStore) -> None:
    assert [jobs.count_delivery("t-1", 0) for _ in range(3)] == [1, 2, 3]
    assert jobs.count_delivery("t-1", 1) == 1  # a retry is a new run, not a crash


def test_a_running_job_without_progress_reports_its_idle_time(jobs: JobStore) -> None:
    job = jobs.create("classify", {})
    assert jobs.stalled_since(jobs.get(job) or {}) is None  # queued: not stalled
    assert jobs.start(job)
    idle = jobs.stalled_since(jobs.get(job) or {})
    assert idle is not None and 0 <= idle < 5


def test_only_job_ids_reach_the_keys() -> None:
    from visionnet.core.jobs import is_job_id, new_job_id

    assert is_job_id(new_job_id())
    for bad in ("x:chunks", "0" * 31 + ":errors", "A" * 32, "", "0" * 64):
        assert not is_job_id(bad)
