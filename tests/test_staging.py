"""Staged chunks on the stack's real Redis: compact, exact, ordered, bounded."""

from __future__ import annotations

import threading
import time
import uuid

import numpy as np
import pytest

from tests.conftest import Stack
from visionnet.core.redis_conn import connect
from visionnet.workers.vectorstore.staging import StagedChunk, StagingArea


@pytest.fixture
def staging(stack: Stack) -> StagingArea:
    # A namespace of its own: the stack's writer must not take these as peers.
    return StagingArea(connect(stack.redis_url, decode=False), 60, f"test-{uuid.uuid4().hex}:")


def chunk(job: str, no: int, rows: int, dim: int = 7) -> StagedChunk:
    rng = np.random.default_rng(no)
    return StagedChunk(
        job_id=job,
        chunk_no=no,
        collection="c",
        ids=[f"{job}-{no}-{i}" for i in range(rows)],
        paths=[f"/p/{i}.jpg" for i in range(rows)],
        sizes=list(range(rows)),
        vectors=rng.standard_normal((rows, dim)).astype(np.float32),
        model="m",
        skipped=1,
        errors=[{"path": "/p/bad.jpg", "error": "not an image"}],
        timings={"embed": 0.5},
    )


def test_a_staged_chunk_comes_back_bit_exact(staging: StagingArea) -> None:
    put = chunk("job-a", 3, rows=5)
    staging.put(put)
    got = staging.get("job-a", 3)
    assert got is not None
    assert np.array_equal(got.vectors, put.vectors) and got.vectors.dtype == np.float32
    assert (got.ids, got.paths, got.sizes, got.errors, got.timings) == (
        put.ids,
        put.paths,
        put.sizes,
        put.errors,
        put.timings,
    )
    assert staging.get("job-a", 4) is None


def test_oldest_first_and_removal(staging: StagingArea) -> None:
    for no in (2, 0, 1):
        staging.put(chunk("job-b", no, rows=2))
    assert staging.oldest(2) == [("job-b", 2), ("job-b", 0)]
    staging.remove("job-b", 2)
    assert staging.oldest(5) == [("job-b", 0), ("job-b", 1)]
    assert staging.get("job-b", 2) is None and staging.count() == 2


def test_an_error_only_chunk_has_no_vectors(staging: StagingArea) -> None:
    staging.put(chunk("job-c", 0, rows=0, dim=0))
    got = staging.get("job-c", 0)
    assert got is not None and got.dim == 0 and got.ids == [] and len(got.errors) == 1


def test_wait_for_room_blocks_until_the_writer_takes_a_chunk(staging: StagingArea) -> None:
    for no in range(3):
        staging.put(chunk("job-d", no, rows=1))
    threading.Timer(0.5, staging.remove, args=("job-d", 0)).start()
    waited = staging.wait_for_room(3, lambda: True, max_wait_s=30)
    assert staging.count() == 2 and waited >= 0.4  # it waited for the removal
    # A cancelled job stops waiting at once; a full area gives up after max_wait_s.
    staging.put(chunk("job-d", 9, rows=1))
    assert staging.wait_for_room(3, lambda: False, max_wait_s=30) < 1
    start = time.monotonic()
    staging.wait_for_room(3, lambda: True, max_wait_s=0.3)
    assert time.monotonic() - start < 5 and staging.count() == 3
