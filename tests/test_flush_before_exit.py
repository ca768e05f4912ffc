"""A warm stop of the store writer seals what it left unflushed
(``flush_due.flush_all_pending``, run by ``worker_process_shutdown``): on a private
Redis and a real Milvus Lite in this process, as the signal handler calls it."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.helpers import lite_worker_context
from tests.test_chunk_failures import ids, new_job, staged, stored_count
from visionnet.workers.base import WorkerContext
from visionnet.workers.commit import commit_chunks
from visionnet.workers.store_writer.flush_due import UNFLUSHED, flush_all_pending


@pytest.fixture(scope="module")
def ctx(private_redis: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[WorkerContext]:
    tmp = tmp_path_factory.mktemp("flush-before-exit")
    yield lite_worker_context(private_redis, tmp)


def segments(ctx: WorkerContext, collection: str) -> list[Path]:
    """The sealed segments' files Milvus Lite wrote for ``collection``."""
    root = Path(ctx.settings.effective_milvus_uri).parent
    return list(root.rglob(f"collections/{collection}/partitions/*/data/*.parquet"))


def test_a_warm_stop_flushes_what_the_writer_left_unflushed(ctx: WorkerContext) -> None:
    collection = "warm_stop"
    job_id = new_job(ctx, {0: 5, 1: 3})
    stats = commit_chunks(
        ctx,
        [
            staged(job_id, 0, ids("a", 5), collection),
            staged(job_id, 1, ids("b", 3), collection),
        ],
    )
    UNFLUSHED.wrote(stats.written)
    assert collection in UNFLUSHED.unflushed()
    assert segments(ctx, collection) == []  # written, logged, not sealed

    assert collection in flush_all_pending(ctx)

    assert len(segments(ctx, collection)) == 1
    assert collection not in UNFLUSHED.unflushed()
    assert stored_count(ctx, collection) == 8
    assert collection not in flush_all_pending(ctx)  # a second stop seals nothing more
    assert len(segments(ctx, collection)) == 1
