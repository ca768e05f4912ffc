"""Classify jobs end to end: upload or path -> Redis -> model worker -> result."""

from __future__ import annotations

import json

import requests

from tests.conftest import Stack
from tests.helpers import counts, image_bytes, submit, wait_job, write_images
from visionnet.core.redis_conn import connect


def _labels(stack: Stack) -> set[str]:
    config = json.loads((stack.model_dir / "config.json").read_text())
    return set(config["id2label"].values())


def _check_predictions(stack: Stack, predictions: list[dict[str, object]], k: int) -> None:
    assert len(predictions) == k
    scores = [float(p["score"]) for p in predictions]  # type: ignore[arg-type]
    assert scores == sorted(scores, reverse=True)
    assert all(0.0 <= s <= 1.0 for s in scores)
    assert sum(scores) <= 1.0 + 1e-5
    assert {p["label"] for p in predictions} <= _labels(stack)


def test_classify_uploads(stack: Stack) -> None:
    files = [("files", (f"pic{i}.png", image_bytes(i), "image/png")) for i in range(3)]
    job_id = submit(stack.base, "classify", files=files, data={"top_k": "3"})
    job = wait_job(stack.base, job_id)
    assert job["state"] == "succeeded", job
    assert job["type"] == "classify"
    assert counts(job) == {"total": 3, "done": 3, "failed": 0}
    images = job["result"]["images"]
    assert [im["name"] for im in images] == ["pic0.png", "pic1.png", "pic2.png"]
    for im in images:
        _check_predictions(stack, im["predictions"], 3)
    assert job["result"]["model"]["random_weights"] is True
    assert "random weights" in job["result"]["notice"]
    assert job["created_at"] <= job["finished_at"]


def test_classify_by_path_with_default_top_k(stack: Stack) -> None:
    paths = write_images(stack.root / "classify", range(100, 104), fmt="JPEG")
    job_id = submit(stack.base, "classify", json={"paths": [str(p) for p in paths]})
    job = wait_job(stack.base, job_id)
    assert job["state"] == "succeeded", job
    for im, path in zip(job["result"]["images"], paths, strict=True):
        assert im["name"] == str(path)
        _check_predictions(stack, im["predictions"], 5)


def test_classify_non_image_upload_is_400(stack: Stack) -> None:
    files = [
        ("files", ("ok.png", image_bytes(1), "image/png")),
        ("files", ("notes.txt", b"hello, not an image", "text/plain")),
    ]
    r = requests.post(f"{stack.base}/api/v1/classify", files=files, timeout=10)
    assert r.status_code == 400
    body = r.json()
    assert body["error"] == "bad_request"
    assert "notes.txt" in body["message"]


def test_classify_bad_top_k_is_400(stack: Stack) -> None:
    files = [("files", ("a.png", image_bytes(1), "image/png"))]
    r = requests.post(f"{stack.base}/api/v1/classify", files=files, data={"top_k": "0"}, timeout=10)
    assert r.status_code == 400
    assert "top_k" in r.json()["message"]


def test_concurrent_requests_share_forward_passes(stack: Stack) -> None:
    """Dynamic batching: 16 one-image jobs sent together run in at most 4 passes (batch 8),
    each with its own result, the one the model gives that image alone."""
    from concurrent.futures import ThreadPoolExecutor

    from tests.helpers import make_image
    from visionnet.workers.models.classifier import Classifier

    def one(seed: int) -> str:
        files = [("files", (f"one{seed}.png", image_bytes(seed), "image/png"))]
        return submit(stack.base, "classify", files=files, data={"top_k": "2"})

    seeds = list(range(7000, 7016))
    with ThreadPoolExecutor(16) as pool:
        ids = list(pool.map(one, seeds))
        jobs = list(pool.map(lambda job_id: wait_job(stack.base, job_id), ids))
    passes = {p for job in jobs for p in job["result"]["forward_passes"]}
    assert all(job["state"] == "succeeded" for job in jobs)
    assert 2 <= len(passes) <= 4, passes  # 16 images, at most 8 per pass

    alone = Classifier(str(stack.model_dir), "cpu")
    for seed, job in zip(seeds, jobs, strict=True):
        (image,) = job["result"]["images"]
        assert image["name"] == f"one{seed}.png"
        expected = alone.predict([make_image(seed)], top_k=2)[0]
        got = image["predictions"]
        assert [p["label"] for p in got] == [p.label for p in expected]
        assert all(abs(g["score"] - e.score) < 1e-4 for g, e in zip(got, expected, strict=True))


def test_jobs_leave_no_celery_results_in_redis(stack: Stack) -> None:
    """Jobs report to their records; a Celery result per job would be a Redis
    write nobody reads, kept for ``result_ttl_s`` (a million one-image jobs: a
    million keys)."""
    client = connect(stack.redis_url)
    before = set(client.scan_iter("celery-task-meta-*"))
    paths = write_images(stack.root / "no-results", range(300, 303), fmt="JPEG")
    job_ids = [submit(stack.base, "classify", json={"paths": [str(p)]}) for p in paths]
    for job_id in job_ids:
        assert wait_job(stack.base, job_id)["state"] == "succeeded"
    left = set(client.scan_iter("celery-task-meta-*")) - before
    assert not left, sorted(left)
