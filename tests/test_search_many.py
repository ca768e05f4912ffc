"""A relevance cut-off, leaving out the query, and many query images in one search job.

On the session stack (demo model); the checks the web makes alone (labels from words
on an image-only embedder, bad labels) on the Flask test client.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import pytest
import requests

from tests.conftest import Stack
from tests.helpers import sha256_file, submit, wait_job, write_images
from tests.test_cli_client import cli
from tests.webapp import WebApp
from visionnet.core.loaded_models import KEY, LoadedModels
from visionnet.core.redis_conn import connect

COLLECTION = "h6_many"
INDEXED = range(61000, 61003)  # seeds no other test uses (content ids are global)
NEW = range(61003, 61006)


@pytest.fixture(scope="module")
def gallery(stack: Stack) -> dict[str, Any]:
    """Three images indexed; a query folder holding copies of them and three others."""
    indexed = write_images(stack.root / "h6_gallery", INDEXED)
    body = {"source": {"path": str(indexed[0].parent)}, "collection": COLLECTION}
    assert wait_job(stack.base, submit(stack.base, "index", json=body))["state"] == "succeeded"
    queries = stack.root / "h6_queries"
    queries.mkdir()
    for path in indexed:
        shutil.copy(path, queries / f"old-{path.name}")
    write_images(queries, NEW)
    (queries / "broken.png").write_bytes(b"not an image")
    ids = {sha256_file(p) for p in indexed}
    return {"indexed": indexed, "queries": queries, "ids": ids}


def _results(stack: Stack, job_id: str, after: int = 0, limit: int = 100) -> dict[str, Any]:
    r = requests.get(
        f"{stack.base}/api/v1/jobs/{job_id}/results",
        params={"after": after, "limit": limit},
        timeout=10,
    )
    assert r.status_code == 200, r.text
    page: dict[str, Any] = r.json()
    return page


def test_min_score_cuts_hits_and_exclude_self_leaves_the_query_out(
    stack: Stack, gallery: dict[str, Any]
) -> None:
    query_id = sorted(gallery["ids"])[0]

    def search(**options: Any) -> list[dict[str, Any]]:
        body = {"image_id": query_id, "collection": COLLECTION, "k": 3, **options}
        job = wait_job(stack.base, submit(stack.base, "search", json=body))
        assert job["state"] == "succeeded", job
        hits: list[dict[str, Any]] = job["result"]["hits"]
        return hits

    everything = search()
    assert len(everything) == 3 and everything[0]["id"] == query_id
    scores = sorted(h["score"] for h in everything)
    cut = (scores[0] + scores[1]) / 2  # between the lowest two: drops exactly one
    kept = search(min_score=cut)
    assert all(h["score"] >= cut for h in kept) and len(kept) == 2
    others = search(exclude_self=True)
    assert query_id not in {h["id"] for h in others}
    assert len(others) == 2  # k counts others: the collection has two more
    # An upload of the indexed file is the same content: left out too.
    with gallery["indexed"][0].open("rb") as f:
        form = {"collection": COLLECTION, "k": "3", "exclude_self": "true"}
        job_id = submit(stack.base, "search", files={"image": f}, data=form)
    job = wait_job(stack.base, job_id)
    assert sha256_file(gallery["indexed"][0]) not in {h["id"] for h in job["result"]["hits"]}
    assert job["result"]["exclude_self"] is True


def test_a_folder_of_queries_gets_each_its_own_hits(stack: Stack, gallery: dict[str, Any]) -> None:
    body = {"source": {"path": str(gallery["queries"])}, "collection": COLLECTION, "k": 2}
    job_id = submit(stack.base, "search", json=body)
    job = wait_job(stack.base, job_id)
    assert job["state"] == "succeeded", job
    assert job["result"]["queries"] == 7 and job["result"]["failed"] == 1
    assert job["progress"]["done"] == 7
    entries = _results(stack, job_id)["entries"]
    assert len(entries) == 7
    by_name = {Path(e["name"]).name: e for e in entries}
    assert "error" in by_name["broken.png"]
    for entry in entries:
        if "error" in entry:
            continue
        assert len(entry["hits"]) == 2
        if entry["id"] in gallery["ids"]:  # indexed: its own best hit, at score 1
            assert entry["hits"][0]["id"] == entry["id"]
            assert entry["hits"][0]["score"] == pytest.approx(1.0, abs=1e-3)
            assert Path(entry["name"]).name.startswith("old-")
        else:
            assert entry["id"] not in {h["id"] for h in entry["hits"]}
    # Paged: the same entries, two at a time, then complete.
    first, second = _results(stack, job_id, 0, 2), _results(stack, job_id, 2, 2)
    assert first["entries"] + second["entries"] == entries[:4] and second["next"] == 4
    assert not second["complete"] and _results(stack, job_id, 4, 10)["complete"]

    # exclude_self and min_score apply to each query.
    body.update(exclude_self=True, min_score=0.0)
    job_id = submit(stack.base, "search", json=body)
    assert wait_job(stack.base, job_id)["state"] == "succeeded"
    for entry in _results(stack, job_id)["entries"]:
        if "hits" in entry:
            assert entry["id"] not in {h["id"] for h in entry["hits"]}
            assert all(h["score"] >= 0.0 for h in entry["hits"])


def test_several_uploads_in_one_search(stack: Stack, gallery: dict[str, Any]) -> None:
    paths = [gallery["indexed"][1], *sorted(gallery["queries"].glob("61004*"))]
    handles = [p.open("rb") for p in paths]
    try:
        files = [("files", (p.name, h)) for p, h in zip(paths, handles, strict=True)]
        job_id = submit(stack.base, "search", files=files, data={"collection": COLLECTION})
    finally:
        for h in handles:
            h.close()
    assert wait_job(stack.base, job_id)["state"] == "succeeded"
    entries = _results(stack, job_id)["entries"]
    assert [e["name"] for e in entries] == [p.name for p in paths]
    assert entries[0]["hits"][0]["id"] == sha256_file(paths[0])
    # Neither kind of query, or two at once: a clear 400.
    r = requests.post(
        stack.base + "/api/v1/search",
        json={"image_id": "0" * 64, "paths": [str(paths[0])], "collection": COLLECTION},
        timeout=10,
    )
    assert r.status_code == 400 and "either" in r.json()["message"]


def test_the_cli_searches_a_folder(stack: Stack, gallery: dict[str, Any]) -> None:
    out = cli(stack, "search", str(gallery["queries"]), "-c", COLLECTION, "-k", "1", "--json")
    assert out.returncode == 0, out.stderr
    found = json.loads(out.stdout)
    assert len(found["entries"]) == 7 and found["job"]["state"] == "succeeded"
    table = cli(stack, "search", str(gallery["queries"]), "-c", COLLECTION, "-k", "1")
    assert table.returncode == 0, table.stderr
    assert "old-" in table.stdout and "broken.png" in table.stdout


def test_labels_from_words_need_a_text_tower_and_valid_labels(web: WebApp) -> None:
    """With an image-only embedder published, classify and index with labels are 400s
    naming the model; bad labels and prompts are 400s whatever the model."""
    write_images(web.root / "h6_words", range(61010, 61011))
    image = str(next((web.root / "h6_words").iterdir()))
    client = connect(web.redis_url)
    LoadedModels(client).publish("embedder", {"name": "tiny-resnet", "text_search": False})
    try:
        r = web.client.post("/api/v1/classify", json={"paths": [image], "labels": ["a cat"]})
        assert r.status_code == 400
        assert "tiny-resnet has no text encoder" in r.get_json()["message"]
        body = {"source": {"path": str(web.root / "h6_words")}, "labels": ["a cat"]}
        assert web.client.post("/api/v1/index", json=body).status_code == 400
    finally:
        client.hdel(KEY, "embedder")
    for bad in (
        {"labels": []},
        {"labels": ["a cat", " "]},
        {"labels": ["a cat"], "prompt": "a photo"},
        {"labels": ["a cat"], "prompt": "{} and {}"},
        {"labels": [f"l{i}" for i in range(1001)]},
    ):
        r = web.client.post("/api/v1/classify", json={"paths": [image], **bad})
        assert r.status_code == 400, bad
    both = {"source": {"path": str(web.root)}, "labels": ["a"], "classify": True}
    assert web.client.post("/api/v1/index", json=both).status_code == 400
    text_self = {"text": "a cat", "exclude_self": True}
    assert web.client.post("/api/v1/search", json=text_self).status_code == 400
