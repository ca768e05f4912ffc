"""Bounded Redis: a finished job keeps only what a poll reads, for its type's retention.

The job store's scripts on a private ``redis-server`` (no worker), then one
classify job through the whole stack, its keys counted with SCAN.
"""

from __future__ import annotations

import time

import pytest
import redis

from tests.conftest import Stack
from tests.helpers import image_bytes, submit, wait_job
from visionnet.config.settings import RetentionSettings, Settings
from visionnet.core.jobs import DELIVERY_PREFIX, EXPIRY, INDEX, ChunkReport, JobState, JobStore
from visionnet.core.jobtypes import JOB_TYPES, retention_by_type
from visionnet.core.redis_conn import connect

RETENTION = {"classify": 300, "index": 7200}


@pytest.fixture
def r(private_redis: str) -> redis.Redis:
    return connect(private_redis)


@pytest.fixture
def jobs(r: redis.Redis) -> JobStore:
    return JobStore(r, ttl_s=86400, max_errors=10, retention_s=RETENTION)


def keys_of(r: redis.Redis, job_id: str) -> set[str]:
    return {k for k in r.scan_iter(count=1000) if job_id in k}


def test_every_job_type_has_a_retention_setting() -> None:
    assert set(RetentionSettings.model_fields) == set(JOB_TYPES)
    kept = retention_by_type(Settings())
    assert kept["classify"] == 3600 and kept["index"] == Settings().result_ttl_s


def test_a_finished_index_job_drops_its_bookkeeping(jobs: JobStore, r: redis.Redis) -> None:
    job = jobs.create("index", {"collection": "c"})
    jobs.start(job)
    jobs.count_delivery(job, 0)  # the planner's runs, under the job's id
    jobs.count_delivery(job, 1)
    for n in (0, 1):
        assert jobs.plan_chunk(job, n, 2)
        assert jobs.decide_once(job, n, [f"id{n}"]) == {f"id{n}"}
    error = {"path": "/x/bad.jpg", "error": "corrupt image"}
    assert not jobs.record_chunk(job, ChunkReport(0, 2, 0, 0, []))
    assert jobs.decide_once(job, 1, []) == {"id1"}
    assert not jobs.record_chunk(job, ChunkReport(1, 1, 0, 1, [error]))
    assert len(keys_of(r, job)) == 10  # record, 5 sets and lists, 2 decisions, 2 delivery counters
    assert jobs.finish_planning(job)

    key = JobStore.key(job)
    assert keys_of(r, job) == {key, key + ":errors"}
    assert 7000 < r.ttl(key) <= 7200 and 7000 < r.ttl(key + ":errors") <= 7200
    record = jobs.get(job) or {}
    assert (record["state"], record["indexed"], record["failed"], record["done"]) == (
        "succeeded",
        "3",
        "1",
        "4",
    )
    assert jobs.errors(job) == [error]
    # A late duplicate report counts nothing and brings no bookkeeping back.
    assert not jobs.record_chunk(job, ChunkReport(1, 1, 0, 1, [error]))
    assert not jobs.plan_chunk(job, 2, 5)
    assert jobs.set_fields(job, note="x")
    assert (jobs.get(job) or {})["done"] == "4"
    assert keys_of(r, job) == {key, key + ":errors"}
    assert r.ttl(key) <= 7200  # a write to a finished record keeps its retention


def test_a_finished_classify_job_keeps_its_record_for_its_retention(
    jobs: JobStore, r: redis.Redis
) -> None:
    job = jobs.create("classify", {})
    jobs.count_delivery(job, 0)
    assert jobs.start(job)
    assert r.ttl(JobStore.key(job)) > 80000  # running: result_ttl_s past each write
    assert jobs.transition(job, JobState.SUCCEEDED, result={"images": []})
    assert keys_of(r, job) == {JobStore.key(job)}
    assert 250 < r.ttl(JobStore.key(job)) <= 300
    assert not r.exists(f"{DELIVERY_PREFIX}{job}:0")
    # A type the map leaves out keeps ttl_s.
    other = jobs.create("search", {})
    assert jobs.transition(other, JobState.CANCELLED)
    assert r.ttl(JobStore.key(other)) > 80000


def test_expired_records_leave_the_job_list(jobs: JobStore, r: redis.Redis) -> None:
    gone = [jobs.create("classify", {}) for _ in range(3)]
    kept = jobs.create("index", {})
    for job in gone:
        r.delete(JobStore.key(job))  # what an expiry leaves: the ids in both indexes
    r.zadd(EXPIRY, {job: 0 for job in [*gone, kept]})  # all due for a look
    jobs.create("classify", {})  # each creation prunes a few due ids
    ids = set(r.zrange(INDEX, 0, -1))
    assert not ids & set(gone) and kept in ids
    assert not set(r.zrange(EXPIRY, 0, -1)) & set(gone)
    assert r.zscore(EXPIRY, kept) > 0  # still there: looked at again later


def test_a_classify_job_read_after_its_end_leaves_only_its_record(stack: Stack) -> None:
    """Through the whole stack: SCAN before and after one job, then its TTL."""
    r = connect(stack.redis_url)
    files = [("files", ("one.png", image_bytes(7100), "image/png"))]
    wait_job(stack.base, submit(stack.base, "classify", files=files))  # service-wide keys made
    before = set(r.scan_iter(count=1000))
    job_id = submit(stack.base, "classify", files=files)
    job = wait_job(stack.base, job_id)
    assert job["state"] == "succeeded" and job["result"]["images"][0]["predictions"]
    assert wait_job(stack.base, job_id) == job  # read again: the same document
    # The job's record says succeeded before the worker acks the task (acks_late):
    # until then kombu's "unacked" hash holds the delivery. Service-wide, and
    # deleted when empty; wait for it rather than count it as the job's.
    deadline = time.monotonic() + 30
    while r.exists("unacked") and time.monotonic() < deadline:
        time.sleep(0.05)
    after = set(r.scan_iter(count=1000))
    key = JobStore.key(job_id)
    assert {k for k in after if job_id in k} == {key}
    assert not [k for k in after - before if k.startswith(DELIVERY_PREFIX)]
    assert after - before - {key} <= {EXPIRY, INDEX}
    assert 3500 < r.ttl(key) <= 3600  # jobs.retention_s.classify, not result_ttl_s
