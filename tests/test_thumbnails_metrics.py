"""What the page needs from the API: thumbnails of indexed images, and /metrics."""

from __future__ import annotations

import io

import requests
from PIL import Image
from prometheus_client.parser import text_string_to_metric_families

from tests.conftest import Stack
from tests.helpers import make_image, sha256_file, submit, wait_job


def _samples(stack: Stack) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    r = requests.get(f"{stack.base}/metrics", timeout=30)
    assert r.status_code == 200 and r.headers["Content-Type"].startswith("text/plain")
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(r.text)
        for s in family.samples
    }


def test_thumbnails_only_of_indexed_images_resized_and_cached(stack: Stack) -> None:
    folder = stack.root / "thumbs"
    folder.mkdir()
    wide, gone = folder / "wide.jpg", folder / "gone.jpg"
    make_image(9900, (300, 200)).save(wide, quality=90)
    make_image(9901, (120, 90)).save(gone, quality=90)
    body = {"source": {"path": str(folder)}, "collection": "thumbs"}
    assert wait_job(stack.base, submit(stack.base, "index", json=body))["state"] == "succeeded"

    url = f"{stack.base}/api/v1/images/{sha256_file(wide)}/thumbnail"
    r = requests.get(url, params={"size": 128}, timeout=10)
    assert r.status_code == 200 and r.headers["Content-Type"] == "image/jpeg"
    assert Image.open(io.BytesIO(r.content)).size == (128, 85)
    etag = r.headers["ETag"]
    again = requests.get(url, params={"size": 128}, headers={"If-None-Match": etag}, timeout=10)
    assert again.status_code == 304
    assert requests.get(url, params={"size": 100}, timeout=10).status_code == 400

    not_indexed = requests.get(f"{stack.base}/api/v1/images/{'e' * 64}/thumbnail", timeout=10)
    assert not_indexed.status_code == 404
    sneaky = requests.get(f"{stack.base}/api/v1/images/..%2Fetc/thumbnail", timeout=10)
    assert sneaky.status_code in (400, 404)  # an id, never a path
    # A file removed after indexing has no thumbnail, and says why.
    gone_id = sha256_file(gone)
    gone.unlink()
    r = requests.get(f"{stack.base}/api/v1/images/{gone_id}/thumbnail", timeout=10)
    assert r.status_code == 404 and "gone" in r.json()["message"]


def test_metrics_count_jobs_images_and_stages(stack: Stack) -> None:
    folder = stack.root / "metrics"
    folder.mkdir()
    for i in range(20):
        make_image(9910 + i).save(folder / f"{i}.png")
    (folder / "bad.png").write_bytes(b"not a png")
    before = _samples(stack)
    body = {"source": {"path": str(folder)}, "collection": "metrics"}
    job = wait_job(stack.base, submit(stack.base, "index", json=body))
    assert job["state"] == "succeeded"
    after = _samples(stack)

    def grew(name: str, **labels: str) -> float:
        key = (name, tuple(sorted(labels.items())))
        return after.get(key, 0.0) - before.get(key, 0.0)

    assert grew("visionnet_jobs_submitted_total", type="index") == 1
    assert grew("visionnet_jobs_finished_total", type="index", state="succeeded") == 1
    assert grew("visionnet_images_total", outcome="indexed") == 20
    assert grew("visionnet_images_total", outcome="failed") == 1
    chunks = 2  # 21 files in chunks of 16
    assert grew("visionnet_index_stage_seconds_count", stage="embed") == chunks
    assert grew("visionnet_index_stage_seconds_bucket", stage="embed", le="+Inf") == chunks
    assert grew("visionnet_index_stage_seconds_sum", stage="embed") > 0
    assert ("visionnet_queue_depth", (("queue", "bulk"),)) in after
    assert after[("visionnet_workers", (("queue", "models"),))] >= 1
