"""The store writer flushes Milvus Lite when it pays (``store_writer/flush_due.py``):
an index job's collection once, when the job ends, not after each of its chunks."""

from __future__ import annotations

import re
import time

from pymilvus import MilvusClient

from tests.conftest import Stack
from tests.helpers import counts, submit, wait_job, with_milvus, write_images


def _flush_lines(stack: Stack, collection: str) -> int:
    log = (stack.data / "logs" / "store.log").read_text(errors="replace")
    return len(re.findall(rf"flushed collection {re.escape(collection)} in", log))


def test_an_index_job_flushes_its_collection_once_not_per_chunk(lite_stack: Stack) -> None:
    collection = "flush_once"
    folder = lite_stack.root / collection
    write_images(folder, range(700, 740))  # 40 files: three chunks of 16
    job_id = submit(
        lite_stack.base, "index", json={"source": {"path": str(folder)}, "collection": collection}
    )
    job = wait_job(lite_stack.base, job_id, timeout=180)
    assert job["state"] == "succeeded", job
    assert counts(job) == {"total": 40, "done": 40, "failed": 0}
    assert job["result"]["indexed"] == 40
    deadline = time.monotonic() + 30
    while _flush_lines(lite_stack, collection) == 0:
        assert time.monotonic() < deadline, "the collection was never flushed"
        time.sleep(0.1)
    time.sleep(3)  # past milvus.lite_flush_idle_s (2 s): a delayed flush finds it flushed
    assert _flush_lines(lite_stack, collection) == 1
    # One sealed segment for the three chunks (a flush per chunk made three files).
    segments = list(
        (lite_stack.data / "milvus").rglob(f"collections/{collection}/partitions/*/data/*.parquet")
    )
    assert len(segments) == 1, segments

    def count(client: MilvusClient) -> int:
        client.load_collection(collection)
        rows = client.query(collection, filter="", output_fields=["count(*)"])
        return int(rows[0]["count(*)"])

    assert with_milvus(lite_stack.milvus_uri, count) == 40
