"""Embed jobs end to end: feature vectors returned to the caller, equal to the stored ones."""

from __future__ import annotations

import json

import numpy as np
import requests
from pymilvus import MilvusClient

from tests.conftest import Stack
from tests.helpers import (
    counts,
    image_bytes,
    sha256_file,
    submit,
    wait_job,
    with_milvus,
    write_images,
)


def _stored_vectors(stack: Stack, collection: str, ids: list[str]) -> dict[str, list[float]]:
    def get(client: MilvusClient) -> dict[str, list[float]]:
        client.load_collection(collection)
        rows = client.get(collection, ids=ids, output_fields=["vector"])
        return {str(r["id"]): [float(v) for v in r["vector"]] for r in rows}

    result: dict[str, list[float]] = with_milvus(stack.milvus_uri, get)
    return result


def test_embed_vectors_equal_the_vectors_an_index_job_stores(stack: Stack) -> None:
    folder = stack.root / "embed_eq"
    paths = write_images(folder, range(600, 605), fmt="JPEG")
    index = submit(
        stack.base, "index", json={"source": {"path": str(folder)}, "collection": "embed_eq"}
    )
    assert wait_job(stack.base, index, timeout=180)["result"]["indexed"] == 5
    bad = stack.root / "embed_bad.jpg"
    bad.write_bytes(b"\xff\xd8\xff not a jpeg at all" * 4)

    job_id = submit(stack.base, "embed", json={"paths": [str(p) for p in [*paths, bad]]})
    job = wait_job(stack.base, job_id)
    assert job["state"] == "succeeded", job
    assert job["type"] == "embed"
    assert counts(job) == {"total": 6, "done": 6, "failed": 1}
    result = job["result"]
    assert result["dim"] == 16 and result["normalized"] is True
    # A model name, never the server's path to it.
    assert result["model"]["name"] == f"local:{stack.model_dir.name}"
    assert str(stack.model_dir) not in json.dumps(job)
    *good, failed = result["images"]
    assert failed["name"] == str(bad) and "vector" not in failed and failed["error"]

    ids = [sha256_file(p) for p in paths]
    assert [im["id"] for im in good] == ids
    assert [im["name"] for im in good] == [str(p) for p in paths]
    stored = _stored_vectors(stack, "embed_eq", ids)
    for im in good:
        vector = np.array(im["vector"], dtype=np.float32)
        assert vector.shape == (16,)
        assert abs(float(np.linalg.norm(vector)) - 1.0) < 1e-5
        np.testing.assert_allclose(vector, stored[im["id"]], atol=1e-5)


def test_embed_uploads_match_the_same_files_by_path(stack: Stack) -> None:
    folder = stack.root / "embed_up"
    paths = write_images(folder, range(700, 702))
    files = [
        ("files", (f"u{i}.png", image_bytes(seed), "image/png"))
        for i, seed in enumerate((700, 701))
    ]
    by_upload = wait_job(stack.base, submit(stack.base, "embed", files=files))
    by_path = wait_job(
        stack.base, submit(stack.base, "embed", json={"paths": [str(p) for p in paths]})
    )
    assert by_upload["state"] == by_path["state"] == "succeeded"
    uploaded, read = by_upload["result"]["images"], by_path["result"]["images"]
    assert [im["name"] for im in uploaded] == ["u0.png", "u1.png"]
    assert [im["id"] for im in uploaded] == [im["id"] for im in read]
    for a, b in zip(uploaded, read, strict=True):
        np.testing.assert_allclose(a["vector"], b["vector"], atol=1e-5)
    # Different pictures, different vectors.
    assert not np.allclose(uploaded[0]["vector"], uploaded[1]["vector"], atol=1e-3)


def test_embed_bad_input_is_400(stack: Stack) -> None:
    r = requests.post(
        f"{stack.base}/api/v1/embed",
        files=[("files", ("notes.txt", b"plain text", "text/plain"))],
        timeout=10,
    )
    assert r.status_code == 400 and "notes.txt" in r.json()["message"]
    r = requests.post(f"{stack.base}/api/v1/embed", json={"paths": []}, timeout=10)
    assert r.status_code == 400 and "paths" in r.json()["message"]
    r = requests.post(f"{stack.base}/api/v1/embed", json={"paths": ["/etc/passwd"]}, timeout=10)
    assert r.status_code == 403 and r.json()["error"] == "path_not_allowed"
    r = requests.post(
        f"{stack.base}/api/v1/embed", json={"paths": [str(stack.root)], "k": 3}, timeout=10
    )
    assert r.status_code == 400 and "k" in r.json()["message"]  # unknown keys are refused
