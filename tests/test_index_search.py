"""Index and search jobs end to end, against the real milvus-lite server."""

from __future__ import annotations

import os
import re
import shutil
import time
from typing import Any

import pytest
import requests
import torch
from pymilvus import MilvusClient

from tests.conftest import Stack
from tests.helpers import counts, sha256_file, submit, wait_job, with_milvus, write_images
from visionnet.workers.models.runtime import Runtime, bulk_passes


@pytest.fixture(scope="module", params=["lite", "server"])
def stack(request: pytest.FixtureRequest) -> Stack:
    """Every test here runs against Milvus Lite and against a real Milvus server."""
    found: Stack = request.getfixturevalue(f"{request.param}_stack")
    return found


def _count(stack: Stack, collection: str) -> int:
    def count(client: MilvusClient) -> int:
        client.load_collection(collection)
        rows = client.query(collection, filter="", output_fields=["count(*)"])
        return int(rows[0]["count(*)"])

    return int(with_milvus(stack.milvus_uri, count))


def _index(stack: Stack, path: str, collection: str) -> dict[str, Any]:
    job_id = submit(stack.base, "index", json={"source": {"path": path}, "collection": collection})
    job = wait_job(stack.base, job_id, timeout=180)
    assert job["state"] == "succeeded", job
    return job


@pytest.fixture(scope="module")
def indexed(stack: Stack) -> dict[str, Any]:
    folder = stack.root / "set50"
    paths = write_images(folder / "a", range(0, 25)) + write_images(folder / "b", range(25, 50))
    first = _index(stack, str(folder), "set50")
    return {"folder": folder, "paths": paths, "first": first}


def test_index_stores_each_image_once(stack: Stack, indexed: dict[str, Any]) -> None:
    result = indexed["first"]["result"]
    assert result["total"] == 50
    assert result["indexed"] == 50
    assert result["skipped"] == 0 and result["failed"] == 0
    assert counts(indexed["first"]) == {"total": 50, "done": 50, "failed": 0}
    assert _count(stack, "set50") == 50
    # Where the time went, per stage, summed over the job's chunks.
    stages = result["stage_seconds"]
    direct = stack.env.get("VISIONNET_MILVUS__DIRECT_WRITES") == "true"
    # The store writer's hand-off has a stage of its own; direct writes skip it.
    handoff = set() if direct else {"handoff_wait"}
    assert (
        set(stages)
        == {
            "read",
            "hash",
            "lookup",
            "decode",
            "preprocess",
            "decode_wait",
            "embed",
            "write",
        }
        | handoff
    )
    # Hashing 16 small files can round to 0 (timings keep 4 decimals); the rest cannot.
    assert all(stages[s] > 0 for s in ("read", "decode", "preprocess", "embed", "write"))


def test_reindex_stores_nothing_new(stack: Stack, indexed: dict[str, Any]) -> None:
    again = _index(stack, str(indexed["folder"]), "set50")["result"]
    assert (again["total"], again["indexed"], again["skipped"]) == (50, 0, 50)
    assert _count(stack, "set50") == 50


def test_copy_under_another_name_is_not_stored_twice(stack: Stack, indexed: dict[str, Any]) -> None:
    original = indexed["paths"][7]
    shutil.copy(original, indexed["folder"] / "b" / "renamed_copy.png")
    result = _index(stack, str(indexed["folder"]), "set50")["result"]
    assert (result["total"], result["indexed"], result["skipped"]) == (51, 0, 51)
    assert _count(stack, "set50") == 50


def test_search_with_an_indexed_image_finds_it_first(stack: Stack, indexed: dict[str, Any]) -> None:
    query = indexed["paths"][3]
    with query.open("rb") as fh:
        job_id = submit(
            stack.base,
            "search",
            files={"image": ("query.png", fh, "image/png")},
            data={"k": "5", "collection": "set50"},
        )
    job = wait_job(stack.base, job_id)
    assert job["state"] == "succeeded", job
    hits = job["result"]["hits"]
    assert len(hits) == 5
    assert hits[0]["id"] == sha256_file(query)
    assert hits[0]["path"] == str(query)
    assert hits[0]["score"] == pytest.approx(1.0, abs=1e-4)
    assert [h["score"] for h in hits] == sorted((h["score"] for h in hits), reverse=True)
    stages = job["result"]["stage_seconds"]
    assert set(stages) == {"query", "search"} and all(v > 0 for v in stages.values())


def test_search_by_image_id(stack: Stack, indexed: dict[str, Any]) -> None:
    image_id = sha256_file(indexed["paths"][30])
    job_id = submit(
        stack.base, "search", json={"image_id": image_id, "k": 3, "collection": "set50"}
    )
    job = wait_job(stack.base, job_id)
    assert job["state"] == "succeeded", job
    assert job["result"]["hits"][0]["id"] == image_id
    assert job["result"]["hits"][0]["score"] == pytest.approx(1.0, abs=1e-4)


def test_search_unknown_image_id_fails_the_job(stack: Stack, indexed: dict[str, Any]) -> None:
    job_id = submit(stack.base, "search", json={"image_id": "0" * 64, "collection": "set50"})
    job = wait_job(stack.base, job_id)
    assert job["state"] == "failed"
    assert "not in collection" in job["error"]


def test_search_missing_collection_fails_the_job(stack: Stack) -> None:
    job_id = submit(stack.base, "search", json={"image_id": "a" * 64, "collection": "nope"})
    job = wait_job(stack.base, job_id)
    assert job["state"] == "failed"
    assert "does not exist" in job["error"]


def test_search_non_image_upload_is_400(stack: Stack) -> None:
    r = requests.post(
        f"{stack.base}/api/v1/search",
        files={"image": ("x.jpg", b"\xff\xd8 truncated nonsense", "image/jpeg")},
        timeout=10,
    )
    assert r.status_code == 400
    assert "x.jpg" in r.json()["message"]


def test_corrupt_file_fails_alone(stack: Stack) -> None:
    folder = stack.root / "with_corrupt"
    write_images(folder, range(200, 205))
    bad = folder / "broken.jpg"
    bad.write_bytes(b"\xff\xd8\xff\xe0 this is not really a jpeg" * 10)
    job = _index(stack, str(folder), "corrupt")
    result = job["result"]
    assert (result["total"], result["indexed"], result["failed"]) == (6, 5, 1)
    assert [e["path"] for e in result["errors"]] == [str(bad)]
    assert job["progress"]["failed"] == 1
    assert _count(stack, "corrupt") == 5


def test_index_path_outside_roots_is_403(stack: Stack) -> None:
    write_images(stack.outside, range(300, 302))
    for path in (str(stack.outside), str(stack.root / ".." / "outside"), "/etc"):
        r = requests.post(f"{stack.base}/api/v1/index", json={"source": {"path": path}}, timeout=10)
        assert r.status_code == 403, path
        assert r.json()["error"] == "path_not_allowed"
    r = requests.post(
        f"{stack.base}/api/v1/index", json={"source": {"path": "relative/dir"}}, timeout=10
    )
    assert r.status_code == 400 and "source.path" in r.json()["message"]  # the schema says so


def test_symlink_escaping_roots_is_403(stack: Stack) -> None:
    link = stack.root / "escape"
    if not link.exists():
        link.symlink_to(stack.outside, target_is_directory=True)
    r = requests.post(
        f"{stack.base}/api/v1/index", json={"source": {"path": str(link)}}, timeout=10
    )
    assert r.status_code == 403
    r = requests.post(
        f"{stack.base}/api/v1/classify",
        json={"paths": [str(link / "img_0300.png")]},
        timeout=10,
    )
    assert r.status_code == 403


def test_bad_collection_name_is_400(stack: Stack) -> None:
    r = requests.post(
        f"{stack.base}/api/v1/index",
        json={"source": {"path": str(stack.root)}, "collection": "bad name; drop"},
        timeout=10,
    )
    assert r.status_code == 400
    assert "collection" in r.json()["message"]


def test_a_search_does_not_wait_behind_an_index_jobs_backlog(
    stack: Stack, indexed: dict[str, Any]
) -> None:
    """Index chunks queue on "bulk"; a search on "models" is taken before the next chunk."""
    from visionnet.core.queues import BULK_QUEUE
    from visionnet.core.redis_conn import connect

    big = stack.root / "backlog"
    write_images(big, range(20_000, 20_640))  # 40 chunks of 16
    job_id = submit(
        stack.base, "index", json={"source": {"path": str(big)}, "collection": "backlog"}
    )
    redis = connect(stack.redis_url)
    deadline = time.monotonic() + 60
    while redis.llen(BULK_QUEUE) < 10:  # the planner has queued the backlog
        assert time.monotonic() < deadline, "the index job never queued its chunks"
        time.sleep(0.01)
    search = submit(stack.base, "search", json={"image_id": sha256_file(indexed["paths"][0]),
                                                "k": 3, "collection": "set50"})  # fmt: skip
    found = wait_job(stack.base, search)
    waiting = redis.llen(BULK_QUEUE)
    assert found["state"] == "succeeded", found
    # Done while chunks queued before it still wait: it went ahead of the backlog.
    assert waiting > 0, "the search waited for the whole backlog"
    assert wait_job(stack.base, job_id, timeout=300)["state"] == "succeeded"


def test_model_workers_warm_up_as_they_start(stack: Stack) -> None:
    """The models are loaded, and one pass run, before any job asks (no cold first job)."""
    logs = stack.data / "logs"
    deadline = time.monotonic() + 60
    while True:
        bulk = (logs / "models.log").read_text()
        interactive = (logs / "interactive.log").read_text()
        if "warmed up the embedder" in bulk and "warmed up the classifier" in interactive:
            break
        assert time.monotonic() < deadline, (bulk[-2000:], interactive[-2000:])
        time.sleep(0.5)
    assert "warmed up the classifier" not in bulk  # bulk work needs the embedder only
    # Interactive passes hold a few pictures: one CPU thread each (the default
    # models.interactive_cpu_threads). Bulk passes on a CPU of 2 or more cores
    # run two at a time, on half the cores each (models.bulk_passes_at_once).
    assert re.search(r"warmed up the classifier in \S+ \(1 CPU threads per pass\)", interactive)
    cores = os.cpu_count() or 1
    passes = bulk_passes(0, "cpu", cores)
    each = cores // passes if passes > 1 else torch.get_num_threads()
    assert re.search(rf"warmed up the embedder in \S+ \({each} CPU threads per pass\)", bulk)
    # ... and say what runs them, and why: "auto" resolved on this machine (choice.py).
    # A precision auto picked may fall back to fp32 at load, under the probes' gate.
    chosen = Runtime().choice("cpu")
    said = f"per pass) on {chosen.label}: {chosen.reason}"
    under_gate = f"per pass) on torch/fp32: {chosen.reason}; {chosen.precision} kept recall@10 "
    assert (
        said in bulk
        or (chosen.confirm and under_gate in bulk)
        or (chosen.runtime == "onnxruntime" and "torch fp32 instead" in bulk)
    ), bulk[-3000:]
    store_log = logs / "store.log"  # no store writer where model workers write directly
    assert not store_log.exists() or "warmed up" not in store_log.read_text()


def test_collections_are_listed_counted_and_dropped(stack: Stack) -> None:
    folder = stack.root / "coll"
    write_images(folder, range(8800, 8830), fmt="JPEG")
    job = _index(stack, str(folder), "coll_drop")
    _index(stack, str(folder), "coll_drop")  # again: nothing new, the count stays
    listed = requests.get(f"{stack.base}/api/v1/collections", timeout=10).json()["collections"]
    entry = next(c for c in listed if c["name"] == "coll_drop")
    assert entry["count"] == job["result"]["indexed"] == 30 == _count(stack, "coll_drop")
    assert entry["dim"] == 16 and entry["model"].startswith("local:") and entry["state"] == "ready"
    one = requests.get(f"{stack.base}/api/v1/collections/coll_drop", timeout=10)
    assert one.status_code == 200 and one.json() == entry
    assert requests.get(f"{stack.base}/api/v1/collections/nope", timeout=10).status_code == 404
    assert requests.get(f"{stack.base}/api/v1/collections/bad-name", timeout=10).status_code == 400
    r = requests.delete(f"{stack.base}/api/v1/collections/coll_drop", timeout=10)
    assert r.status_code == 202 and r.json()["state"] == "deleting"
    gone = requests.get(f"{stack.base}/api/v1/collections/coll_drop", timeout=10)
    assert gone.status_code == 404  # gone for the API at once; the writer drops it behind
    listed = requests.get(f"{stack.base}/api/v1/collections", timeout=10).json()["collections"]
    assert "coll_drop" not in {c["name"] for c in listed}
    deadline = time.monotonic() + 60
    while with_milvus(stack.milvus_uri, lambda c: c.has_collection("coll_drop")):
        assert time.monotonic() < deadline, "the collection was never dropped"
        time.sleep(0.2)
    if stack.env.get("VISIONNET_MILVUS__ENGINE") != "server":
        # Indexing into the name again starts from empty. (On the Milvus 2.3.5
        # server, writes to a name re-created right after its drop failed with
        # "can't find collection [old id]": a known gap, in the notes.)
        again = _index(stack, str(folder), "coll_drop")
        assert again["result"]["indexed"] == 30


def test_a_read_right_after_a_write_sees_it(stack: Stack) -> None:
    """Reads wait for the newest recorded write, across processes (``write_clock``).

    A writer and a reader with clients of their own, as the store writer and the
    interactive worker are. Each row is read the moment its upsert returns; on the
    real server a read that did not wait for it (time tick 20 ms) misses it.
    """
    from visionnet.core.redis_conn import connect
    from visionnet.workers.vectorstore.milvus_store import Row, VectorStore
    from visionnet.workers.vectorstore.write_clock import WriteClock

    clock = WriteClock(connect(stack.redis_url))
    writer = VectorStore(stack.milvus_uri, search_consistency="Session", clock=clock)
    reader = VectorStore(stack.milvus_uri, search_consistency="Session", clock=clock)
    name = "read_after_write"
    writer.ensure_collection(name, 4, "test-model")
    server = stack.env.get("VISIONNET_MILVUS__ENGINE") == "server"
    for n in range(12):
        vector = [1.0 if i == n % 4 else 0.01 * n for i in range(4)]
        row_id = f"{n:064d}"
        writer.upsert(name, [Row(row_id, vector, f"/x/{n}", 1, "test-model", 0)], flush=not server)
        if server:  # the server stamps writes; the clock holds the newest
            assert clock.last(name) == writer.last_write_ts(name) > 0
        assert reader.get_vector(name, row_id) is not None
        assert row_id in {h.id for h in reader.search(name, vector, k=20)}
    writer.drop_collection(name)
    assert clock.last(name) is None
