"""The job list and live progress, over real HTTP against the running stack."""

from __future__ import annotations

import re
import time
from typing import Any

import requests

from tests.conftest import Stack
from tests.helpers import image_bytes, submit, wait_job, write_images


def _list(stack: Stack, **params: Any) -> dict[str, Any]:
    r = requests.get(f"{stack.base}/api/v1/jobs", params=params, timeout=30)
    assert r.status_code == 200, r.text
    body: dict[str, Any] = r.json()
    return body


def test_jobs_are_listed_newest_first_page_by_page(stack: Stack) -> None:
    ids = []
    for n in range(3):
        files = [("files", (f"l{n}.png", image_bytes(7000 + n), "image/png"))]
        ids.append(submit(stack.base, "classify", files=files))
    for job_id in ids:
        wait_job(stack.base, job_id)
    first = _list(stack, limit=2, type="classify")
    assert [j["id"] for j in first["jobs"]] == ids[::-1][:2]
    assert first["next_cursor"]
    second = _list(stack, limit=2, type="classify", cursor=first["next_cursor"])
    assert second["jobs"][0]["id"] == ids[0]  # no overlap, nothing skipped
    assert all(j["type"] == "classify" for j in first["jobs"] + second["jobs"])
    done = _list(stack, state="succeeded", limit=500)["jobs"]
    assert set(ids) <= {j["id"] for j in done}
    assert all(j["state"] == "succeeded" for j in done)
    # A deleted job leaves the list.
    assert requests.delete(f"{stack.base}/api/v1/jobs/{ids[2]}", timeout=10).status_code == 204
    assert ids[2] not in {j["id"] for j in _list(stack, limit=500)["jobs"]}


def test_bad_list_queries_are_400_with_a_reason(stack: Stack) -> None:
    for params in ({"limit": 0}, {"type": "caption"}, {"state": "lost"}, {"cursor": "x"}):
        r = requests.get(f"{stack.base}/api/v1/jobs", params=params, timeout=10)
        assert r.status_code in (400, 422), (params, r.text)
        assert r.json()["message"], r.text


def test_index_progress_only_grows_and_ends_at_total(stack: Stack) -> None:
    folder = stack.root / "progress"
    write_images(folder, range(9000, 9200), fmt="JPEG")
    body = {"source": {"path": str(folder)}, "collection": "progress"}
    job_id = submit(stack.base, "index", json=body)
    seen: list[dict[str, Any]] = []
    while True:
        job = requests.get(f"{stack.base}/api/v1/jobs/{job_id}", timeout=10).json()
        seen.append(job["progress"])
        if job["state"] not in ("queued", "running"):
            break
        time.sleep(0.05)
    assert job["state"] == "succeeded", job
    for key in ("done", "indexed", "skipped", "failed"):
        values = [p[key] for p in seen]
        assert values == sorted(values), (key, values)  # counts only grow
    last = seen[-1]
    assert last["done"] == last["total"] == 200
    assert last["indexed"] + last["skipped"] + last["failed"] == last["done"]
    assert last["files_per_s"] > 0 and last["eta_s"] is None
    assert {"read", "embed", "write"} <= set(last["stage_seconds"])
    running = [p for p in seen if 0 < p["done"] < p["total"]]
    assert all(p["files_per_s"] is not None for p in running)


def test_retry_runs_only_the_files_that_failed_for_a_reason_that_can_change(stack: Stack) -> None:
    folder = stack.root / "retry"
    write_images(folder, range(9300, 9310), fmt="JPEG")
    (folder / "late.jpg").symlink_to(folder / "arrives-later.jpg")  # not there yet
    (folder / "bad.jpg").write_bytes(b"not an image at all")
    body = {"source": {"path": str(folder)}, "collection": "retry"}
    first = wait_job(stack.base, submit(stack.base, "index", json=body))
    assert (first["result"]["indexed"], first["result"]["failed"]) == (10, 2), first
    # The missing file arrives; the corrupt one stays corrupt.
    write_images(folder / "later", range(9310, 9311), fmt="JPEG")[0].rename(
        folder / "arrives-later.jpg"
    )
    r = requests.post(f"{stack.base}/api/v1/jobs/{first['id']}/retry", timeout=10)
    assert r.status_code == 202, r.text
    accepted = r.json()
    assert accepted["retried"] == 1
    assert [e["path"] for e in accepted["not_retried"]] == [str(folder / "bad.jpg")]
    second = wait_job(stack.base, accepted["job_id"])
    assert second["state"] == "succeeded", second
    result = second["result"]
    assert (result["total"], result["indexed"], result["failed"]) == (1, 1, 0)
    # Nothing left that a retry could change; a classify job has nothing to retry.
    again = requests.post(f"{stack.base}/api/v1/jobs/{accepted['job_id']}/retry", timeout=10)
    assert again.status_code == 409 and "no failed files" in again.json()["message"]
    files = [("files", ("one.png", image_bytes(1), "image/png"))]
    classify = wait_job(stack.base, submit(stack.base, "classify", files=files))
    other = requests.post(f"{stack.base}/api/v1/jobs/{classify['id']}/retry", timeout=10)
    assert other.status_code == 409


def test_cancel_during_planning_stops_the_walk_and_the_chunks(stack: Stack) -> None:
    """The planner walks in steps (jobs.plan_ahead_chunks): a cancel ends the walk."""
    folder = stack.root / "big"
    for sub in range(10):
        write_images(folder / f"d{sub}", range(20000 + sub * 200, 20200 + sub * 200))
    body = {"source": {"path": str(folder)}, "collection": "big"}
    job_id = submit(stack.base, "index", json=body)
    r = requests.post(f"{stack.base}/api/v1/jobs/{job_id}/cancel", timeout=10)
    assert r.status_code == 202, r.text
    time.sleep(1)  # a chunk that had started finishes its batch, then sees the cancel
    before = requests.get(f"{stack.base}/api/v1/jobs/{job_id}", timeout=10).json()
    time.sleep(5)
    after = requests.get(f"{stack.base}/api/v1/jobs/{job_id}", timeout=10).json()
    assert after["state"] == "cancelled"
    # The walk stopped: at most one step of chunks (16 x 16 files) was ever planned.
    assert after["progress"]["total"] <= 16 * 16 < 2000
    assert after["progress"] == before["progress"]  # and nothing ran after the cancel


def test_a_folder_larger_than_a_step_is_walked_from_its_listing(stack: Stack) -> None:
    """Steps after the first read a large folder's sorted listing, not the folder
    (walk.py, listing.py); the listing goes when the walk ends."""
    folder = stack.root / "flat-large"
    write_images(folder, range(30000, 30400))  # a step is 16 chunks of 16 files
    body = {"source": {"path": str(folder)}, "collection": "flat_large"}
    job_id = submit(stack.base, "index", json=body)
    job = wait_job(stack.base, job_id, timeout=180)
    assert job["state"] == "succeeded", job
    assert job["progress"]["done"] == job["progress"]["total"] == 400
    assert job["result"]["indexed"] == 400
    log = (stack.data / "logs" / "models.log").read_text()
    assert re.search(rf"listed {re.escape(str(folder))} in \S+ s \(0 runs\)", log), log[-3000:]
    assert not (stack.data / "listings" / job_id).exists()
