"""A moved folder, indexed again: its rows get the new paths, nothing is embedded again."""

from __future__ import annotations

import json
import os
import shutil
import uuid

import numpy as np
import requests
from pymilvus import MilvusClient

from tests.conftest import Stack
from tests.helpers import sha256_file, submit, wait_job, with_milvus, write_images
from visionnet.core.redis_conn import connect
from visionnet.workers.vectorstore.staging import StagedChunk, StagingArea


def _index(stack: Stack, folder: str) -> dict[str, int]:
    body = {"source": {"path": folder}, "collection": "relocated"}
    job = wait_job(stack.base, submit(stack.base, "index", json=body))
    assert job["state"] == "succeeded", job
    result: dict[str, int] = job["result"]
    return {k: result[k] for k in ("indexed", "skipped", "moved", "failed")}


def test_a_moved_folder_gets_its_new_paths(stack: Stack) -> None:
    before, after = stack.root / "trip", stack.root / "albums" / "trip"
    paths = write_images(before / "day1", range(9400, 9405))
    ids = [sha256_file(p) for p in paths]
    assert _index(stack, str(before)) == {"indexed": 5, "skipped": 0, "moved": 0, "failed": 0}

    after.parent.mkdir()
    os.rename(before, after)
    assert _index(stack, str(after)) == {"indexed": 0, "skipped": 5, "moved": 5, "failed": 0}
    new_paths = {cid: str(after / "day1" / p.name) for cid, p in zip(ids, paths, strict=True)}

    # The search, the image view and the thumbnails read the new paths.
    query = {"image_id": ids[0], "k": 10, "collection": "relocated"}
    hits = wait_job(stack.base, submit(stack.base, "search", json=query))["result"]["hits"]
    assert {h["id"]: h["path"] for h in hits} == new_paths
    for cid, path in new_paths.items():
        image = requests.get(f"{stack.base}/api/v1/images/{cid}?collection=relocated", timeout=10)
        assert image.json()["path"] == path
        thumb = requests.get(
            f"{stack.base}/api/v1/images/{cid}/thumbnail?collection=relocated", timeout=10
        )
        assert thumb.status_code == 200, thumb.text

    def rows(client: MilvusClient) -> list[dict[str, object]]:
        client.load_collection("relocated")
        found: list[dict[str, object]] = client.query(
            "relocated", filter="", limit=100, output_fields=["path"]
        )
        return found

    assert {str(r["id"]): r["path"] for r in with_milvus(stack.milvus_uri, rows)} == new_paths

    # A copy is not a move: its old path is still there, so the stored path stays.
    copy = stack.root / "copy"
    copy.mkdir()
    shutil.copy(after / "day1" / paths[0].name, copy / "same.png")
    assert _index(stack, str(copy)) == {"indexed": 0, "skipped": 1, "moved": 0, "failed": 0}
    image = requests.get(f"{stack.base}/api/v1/images/{ids[0]}?collection=relocated", timeout=10)
    assert image.json()["path"] == new_paths[ids[0]]


def test_staged_moves_come_back_and_older_staged_chunks_have_none(stack: Stack) -> None:
    raw = connect(stack.redis_url, decode=False)
    staging = StagingArea(raw, 60, f"test-{uuid.uuid4().hex}:")
    chunk = StagedChunk(
        job_id="j", chunk_no=0, collection="c", ids=[], paths=[], sizes=[],
        vectors=np.zeros((0, 0), dtype=np.float32), model="m", skipped=2, errors=[],
        moves={"a" * 64: "/new/a.png", "b" * 64: "/new/\\xff.png"},
    )  # fmt: skip
    staging.put(chunk)
    back = staging.get("j", 0)
    assert back is not None and back.moves == chunk.moves
    # Staged by a worker from before moves existed: its meta has no "moves".
    key = f"test-{uuid.uuid4().hex}:"
    older = StagingArea(raw, 60, key)
    older.put(chunk)
    meta = json.loads(raw.hget(f"{key}staged:j:0", "meta"))
    del meta["moves"]
    raw.hset(f"{key}staged:j:0", "meta", json.dumps(meta))
    again = older.get("j", 0)
    assert again is not None and again.moves == {} and again.skipped == 2
