"""Stored images: metadata by id, search filters, delete by prefix or id; on both stores."""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import requests
from pymilvus import MilvusClient

from tests.conftest import Stack
from tests.helpers import make_image, sha256_file, submit, wait_job, with_milvus
from visionnet.core.pathtext import to_text

COLLECTION = "managed"


@pytest.fixture(scope="module", params=["lite", "server"])
def stack(request: pytest.FixtureRequest) -> Stack:
    found: Stack = request.getfixturevalue(f"{request.param}_stack")
    return found


def _write(folder: Path, seeds: range, size: tuple[int, int]) -> list[Path]:
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for seed in seeds:
        path = folder / f"img_{seed:04d}.png"
        make_image(seed, size).save(path)
        paths.append(path)
    return paths


def _stored_ids(stack: Stack) -> set[str]:
    def ids(client: MilvusClient) -> set[str]:
        client.load_collection(COLLECTION)
        rows = client.query(COLLECTION, filter='id != ""', output_fields=["id"], limit=16384)
        return {str(r["id"]) for r in rows}

    return set(with_milvus(stack.milvus_uri, ids))


def _search(stack: Stack, image_id: str, **filters: Any) -> dict[str, Any]:
    body = {"image_id": image_id, "k": 50, "collection": COLLECTION, **filters}
    job = wait_job(stack.base, submit(stack.base, "search", json=body))
    assert job["state"] == "succeeded", job
    return dict(job["result"])


@pytest.fixture(scope="module")
def indexed(stack: Stack) -> dict[str, list[Path]]:
    top = stack.root / "managed"
    sets = {
        # "pre_fix" and "preXfix": "_" in a prefix must match itself only.
        "wide": _write(top / "pre_fix" / "wide", range(500, 512), (64, 32)),
        "tall": _write(top / "pre_fix" / "tall", range(512, 524), (32, 64)),
        "other": _write(top / "preXfix", range(524, 536), (40, 40)),
    }
    body = {"source": {"path": str(top)}, "collection": COLLECTION, "classify": True}
    job = wait_job(stack.base, submit(stack.base, "index", json=body), timeout=180)
    assert job["state"] == "succeeded", job
    assert job["result"]["indexed"] == 36
    # One pass gave labels and vectors: the tiny ResNet's head reads the embedder's
    # vector (``one_pass``), so there is no separate classify stage.
    assert "classify" not in job["result"]["stage_seconds"]
    return sets


def test_vectors_stored_while_classifying_are_the_embedders(
    stack: Stack, indexed: dict[str, list[Path]]
) -> None:
    paths = indexed["wide"][:3] + indexed["other"][:2]
    job = wait_job(stack.base, submit(stack.base, "embed", json={"paths": [str(p) for p in paths]}))
    assert job["state"] == "succeeded", job
    ids = [sha256_file(p) for p in paths]

    def stored(client: Any) -> dict[str, list[float]]:
        client.load_collection(COLLECTION)
        rows = client.get(COLLECTION, ids=ids, output_fields=["vector"])
        return {r["id"]: r["vector"] for r in rows}

    vectors = with_milvus(stack.milvus_uri, stored)
    for image_id, image in zip(ids, job["result"]["images"], strict=True):
        np.testing.assert_allclose(vectors[image_id], image["vector"], atol=1e-5)


def test_an_image_by_id_has_its_metadata_and_top_label(
    stack: Stack, indexed: dict[str, list[Path]]
) -> None:
    path = indexed["wide"][0]
    r = requests.get(f"{stack.base}/api/v1/images/{sha256_file(path)}", timeout=10)
    assert r.status_code == 200, r.text
    image = r.json()
    assert image["path"] == str(path) and image["size"] == path.stat().st_size
    assert (image["width"], image["height"]) == (64, 32)
    assert image["collection"] == COLLECTION and COLLECTION in image["collections"]
    assert image["label"] and 0.0 < image["label_score"] <= 1.0
    # The label is the classifier's top label for this file.
    with path.open("rb") as fh:
        cls = submit(stack.base, "classify", files={"files": (path.name, fh, "image/png")})
    top = wait_job(stack.base, cls)["result"]["images"][0]["predictions"][0]
    assert image["label"] == top["label"]
    assert image["label_score"] == pytest.approx(top["score"], abs=1e-4)

    r = requests.get(f"{stack.base}/api/v1/images/{'0' * 64}", timeout=10)
    assert r.status_code == 404 and r.json()["error"] == "not_found"
    r = requests.get(f"{stack.base}/api/v1/images/not-an-id", timeout=10)
    assert r.status_code == 400


def test_filters_return_only_matching_rows(stack: Stack, indexed: dict[str, list[Path]]) -> None:
    query = sha256_file(indexed["tall"][0])
    everything = _search(stack, query)["hits"]
    assert len(everything) == 36

    prefix = str(indexed["wide"][0].parent.parent)  # .../pre_fix
    hits = _search(stack, query, path_prefix=prefix)["hits"]
    assert {h["path"] for h in hits} == {str(p) for p in indexed["wide"] + indexed["tall"]}

    hits = _search(stack, query, min_width=50)["hits"]
    assert {h["path"] for h in hits} == {str(p) for p in indexed["wide"]}
    hits = _search(stack, query, min_height=36, max_height=64, max_width=39)["hits"]
    assert {h["path"] for h in hits} == {str(p) for p in indexed["tall"]}

    label = everything[0]["label"]
    hits = _search(stack, query, label=label)["hits"]
    expected = {h["id"] for h in everything if h["label"] == label}
    assert {h["id"] for h in hits} == expected and hits[0]["id"] == query

    assert _search(stack, query, indexed_after=int(time.time()) + 3600)["hits"] == []
    assert len(_search(stack, query, indexed_before=int(time.time()) + 3600)["hits"]) == 36


def test_a_filter_the_request_model_refuses_is_400(stack: Stack) -> None:
    for bad in ({"path_prefix": "relative"}, {"path_prefix": "/a\\b"}, {"min_width": -1}):
        body = {"image_id": "a" * 64, "collection": COLLECTION, **bad}
        r = requests.post(f"{stack.base}/api/v1/search", json=body, timeout=10)
        assert r.status_code == 400, (bad, r.text)


def test_delete_by_prefix_removes_exactly_those_rows(
    stack: Stack, indexed: dict[str, list[Path]]
) -> None:
    before = _stored_ids(stack)
    gone = {sha256_file(p) for p in indexed["tall"]}
    prefix = str(indexed["tall"][0].parent) + "/"
    job = wait_job(
        stack.base,
        submit(stack.base, "delete", json={"collection": COLLECTION, "path_prefix": prefix}),
    )
    assert job["state"] == "succeeded", job
    assert job["result"]["deleted"] == len(gone)
    assert _stored_ids(stack) == before - gone
    r = requests.get(f"{stack.base}/api/v1/images/{next(iter(gone))}", timeout=10)
    assert r.status_code == 404
    r = requests.get(f"{stack.base}/api/v1/collections/{COLLECTION}", timeout=10)
    assert r.json()["count"] == len(before - gone)
    # Searches no longer see them.
    query = sha256_file(indexed["wide"][0])
    assert not gone & {h["id"] for h in _search(stack, query)["hits"]}


def test_delete_by_id_counts_what_was_there(stack: Stack, indexed: dict[str, list[Path]]) -> None:
    before = _stored_ids(stack)
    victim = sha256_file(indexed["other"][3])
    body = {"collection": COLLECTION, "ids": [victim, "f" * 64]}
    job = wait_job(stack.base, submit(stack.base, "delete", json=body))
    assert job["state"] == "succeeded", job
    assert (job["result"]["deleted"], job["result"]["not_found"]) == (1, 1)
    assert _stored_ids(stack) == before - {victim}


def test_delete_needs_one_selection_and_an_existing_collection(stack: Stack) -> None:
    for body in ({}, {"ids": ["a" * 64], "path_prefix": "/x"}, {"ids": ["nope"]}):
        r = requests.post(f"{stack.base}/api/v1/delete", json=body, timeout=10)
        assert r.status_code == 400, (body, r.text)
    body = {"collection": "no_such_collection", "path_prefix": "/x"}
    job = wait_job(stack.base, submit(stack.base, "delete", json=body))
    assert job["state"] == "failed" and "does not exist" in job["error"]


def test_export_downloads_every_row_with_its_vector(
    stack: Stack, indexed: dict[str, list[Path]], tmp_path: Path
) -> None:
    import pyarrow.parquet as pq

    from visionnet.client import Client

    client = Client(stack.base)
    job = client.wait(client.export(COLLECTION), timeout_s=120)
    assert job["state"] == "succeeded", job
    out = tmp_path / "managed.parquet"
    assert client.download(job["id"], out) == job["result"]["bytes"] == out.stat().st_size
    table = pq.read_table(out)
    stored = _stored_ids(stack)
    assert table.num_rows == job["result"]["rows"] == len(stored)
    assert set(table.column("id").to_pylist()) == stored
    assert table.schema.metadata[b"collection"] == COLLECTION.encode()
    # Each row's vector is the stored one; its metadata the catalog's.
    row = table.slice(0, 1).to_pylist()[0]

    def stored_vector(c: MilvusClient) -> list[float]:
        return list(c.get(COLLECTION, ids=[row["id"]], output_fields=["vector"])[0]["vector"])

    expected = np.asarray(with_milvus(stack.milvus_uri, stored_vector), dtype=np.float32)
    assert np.array_equal(np.asarray(row["vector"], dtype=np.float32), expected)
    image = requests.get(f"{stack.base}/api/v1/images/{row['id']}", timeout=10).json()
    assert (row["path"], row["size"], row["width"], row["label"]) == (
        image["path"],
        image["size"],
        image["width"],
        image["label"],
    )
    # Only an export job's finished file is served.
    r = requests.get(f"{stack.base}/api/v1/jobs/{'0' * 32}/export", timeout=10)
    assert r.status_code == 404
    missing = client.wait(client.export("no_such_collection"))
    assert missing["state"] == "failed" and "does not exist" in missing["error"]
    r = requests.get(f"{stack.base}/api/v1/jobs/{missing['id']}/export", timeout=10)
    assert r.status_code == 409


def test_a_prefix_in_the_text_form_finds_folders_that_are_not_utf8(stack: Stack) -> None:
    """Folder names that are not UTF-8 (``\\xNN`` in the text form) or hold a backslash
    (doubled) are searched and deleted by their prefix, on both stores."""
    top = stack.root / os.fsdecode(b"bytes_\xfe")
    odd = _write(top / os.fsdecode(b"raw\xff\\dir"), range(560, 563), (40, 40))
    plain = _write(top / "plain", range(563, 566), (40, 40))
    collection = "managed_bytes"
    body = {"source": {"path": to_text(str(top))}, "collection": collection}
    job = wait_job(stack.base, submit(stack.base, "index", json=body))
    assert (job["state"], job["result"]["indexed"]) == ("succeeded", 6), job

    prefix = to_text(str(odd[0].parent)) + "/"
    assert "\\xff" in prefix and "\\\\dir" in prefix
    query = {"image_id": sha256_file(plain[0]), "k": 50, "collection": collection}
    hits = wait_job(stack.base, submit(stack.base, "search", json={**query, "path_prefix": prefix}))
    assert {h["path"] for h in hits["result"]["hits"]} == {to_text(str(p)) for p in odd}, hits

    delete = {"collection": collection, "path_prefix": prefix}
    job = wait_job(stack.base, submit(stack.base, "delete", json=delete))
    assert (job["state"], job["result"]["deleted"]) == ("succeeded", 3), job
    left = wait_job(stack.base, submit(stack.base, "search", json=query))["result"]["hits"]
    assert {h["path"] for h in left} == {to_text(str(p)) for p in plain}
