"""Duplicates jobs: exact groups on a constructed set, paging, errors, a killed worker, the CLI.

The set: four pictures with copies that the tiny test model embeds at cosine
>= 0.99992 of their original (a pixel-identical PNG re-encoded at another
compression level, a 2x nearest-neighbour upscale, two pixels changed), and
160 other pictures, pairwise at most 0.9987 (both measured with the test
model), so a threshold of 0.9995 must find exactly the four groups.
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
import os
import signal
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import psutil
import pytest
import requests
from PIL import Image

from tests.conftest import SUPERVISORCTL, Stack
from tests.helpers import make_image, submit, wait_job
from tests.test_cli_client import cli
from tests.webapp import WebApp
from visionnet.core.dupgroups import DuplicateStore
from visionnet.core.jobs import JobState, JobStore
from visionnet.core.redis_conn import connect
from visionnet.workers.model_worker.dup_groups import Images, build_groups, normalised, pairs_of

COLLECTION = "dups_h4"
THRESHOLD = 0.9995
SINGLES = range(26000, 26160)  # seeds no other test uses (content ids are global)
SIZE = (96, 80)


def _png(img: Image.Image, level: int = 6) -> bytes:
    buf = io.BytesIO()
    img.save(buf, format="PNG", compress_level=level)
    return buf.getvalue()


def _edited(img: Image.Image) -> Image.Image:
    out = img.copy()
    out.putpixel((3, 3), (255, 0, 0))
    out.putpixel((50, 40), (0, 0, 255))
    return out


@dataclass
class DupSet:
    groups: list[set[str]]  # expected groups, as sets of paths, in the API's order
    files: dict[str, Path]  # path text -> file
    folder: Path


@pytest.fixture(scope="module")
def dup_set(stack: Stack) -> DupSet:
    folder = stack.root / "dups_h4"
    a, b, c, d = (make_image(seed, SIZE) for seed in range(26200, 26204))
    made: dict[str, bytes] = {
        "a/a.png": _png(a),
        "a/a_big.png": _png(a.resize((192, 160), Image.Resampling.NEAREST)),
        "a/a_level0.png": _png(a, 0),
        "a/a_edit.png": _png(_edited(a)),
        "b/b.png": _png(b),
        "b/b_level0.png": _png(b, 0),
        "b/b_edit.png": _png(_edited(b)),
        "c/c.png": _png(c),
        "c/c_edit.png": _png(_edited(c)),
        "d/d.png": _png(d),
        "d/d_level0.png": _png(d, 0),
    }
    made.update({f"singles/s_{s}.png": _png(make_image(s, SIZE)) for s in SINGLES})
    files: dict[str, Path] = {}
    for name, data in made.items():
        path = folder / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
        files[str(path)] = path
    job = wait_job(
        stack.base,
        submit(
            stack.base, "index", json={"source": {"path": str(folder)}, "collection": COLLECTION}
        ),
        timeout=300,
    )
    assert job["state"] == "succeeded" and job["result"]["indexed"] == len(made), job
    by_letter = [{str(p) for n, p in files.items() if Path(n).parent.name == x} for x in "abdc"]
    # Largest first; c and d tie on size, and d's identical copy (score 1.0) puts it first.
    return DupSet(groups=by_letter, files=files, folder=folder)


def _expected_keep(members: set[str], files: dict[str, Path]) -> str:
    def rank(path: str) -> tuple[int, int, str]:
        with Image.open(files[path]) as img:
            pixels = img.width * img.height
        data = files[path].read_bytes()
        return (-pixels, -len(data), hashlib.sha256(data).hexdigest())

    return min(members, key=rank)


def _all_groups(base: str, job_id: str, per_page: int = 200) -> list[dict[str, Any]]:
    r = requests.get(f"{base}/api/v1/jobs/{job_id}/groups?per_page={per_page}", timeout=10)
    assert r.status_code == 200, r.text
    body: dict[str, Any] = r.json()
    assert body["total"] == len(body["groups"])
    return list(body["groups"])


def _check_groups(groups: list[dict[str, Any]], dup_set: DupSet) -> None:
    assert [{m["path"] for m in g["members"]} for g in groups] == dup_set.groups
    for group, paths in zip(groups, dup_set.groups, strict=True):
        keep = _expected_keep(paths, dup_set.files)
        members = group["members"]
        assert group["size"] == len(members)
        assert members[0]["path"] == keep and group["keep"] == members[0]["id"]
        assert members[0]["score"] == 1.0
        rest = [(-m["score"], m["id"]) for m in members[1:]]
        assert rest == sorted(rest)
        for m in members:
            data = dup_set.files[m["path"]].read_bytes()
            with Image.open(io.BytesIO(data)) as img:
                assert (m["width"], m["height"]) == img.size
            assert (m["id"], m["size"]) == (hashlib.sha256(data).hexdigest(), len(data))
            assert THRESHOLD <= m["score"] <= 1.0


def test_groups_of_a_constructed_set_exactly_largest_first_and_paged(
    stack: Stack, dup_set: DupSet
) -> None:
    job_id = submit(
        stack.base, "duplicates", json={"collection": COLLECTION, "threshold": THRESHOLD}
    )
    job = wait_job(stack.base, job_id)
    assert job["state"] == "succeeded", job
    total = len(dup_set.files)
    assert (job["progress"]["done"], job["progress"]["total"]) == (total, total)
    assert {
        "collection": COLLECTION,
        "threshold": THRESHOLD,
        "k": 10,  # duplicates.neighbours
        "groups": 4,
        "images_in_groups": 11,
        "images": total,
        "resumed_from": 0,
    }.items() <= job["result"].items()
    groups = _all_groups(stack.base, job_id)
    _check_groups(groups, dup_set)
    # Pages are slices of the same order.
    pages = [
        requests.get(
            f"{stack.base}/api/v1/jobs/{job_id}/groups",
            params={"page": n, "per_page": 3},
            timeout=10,
        ).json()
        for n in (1, 2, 3)
    ]
    assert [p["total"] for p in pages] == [4, 4, 4]
    assert [g for p in pages for g in p["groups"]] == groups
    assert [len(p["groups"]) for p in pages] == [3, 1, 0]

    # A path prefix compares only the images under it.
    only_b = wait_job(
        stack.base,
        submit(
            stack.base,
            "duplicates",
            json={
                "collection": COLLECTION,
                "threshold": THRESHOLD,
                "path_prefix": f"{dup_set.folder}/b/",
            },
        ),
    )
    assert only_b["state"] == "succeeded" and only_b["result"]["images"] == 3, only_b
    (group,) = _all_groups(stack.base, only_b["id"])
    assert group == groups[1]


def test_bad_requests_are_refused_with_json(stack: Stack, dup_set: DupSet) -> None:
    url = f"{stack.base}/api/v1/duplicates"
    for body in (
        {"collection": COLLECTION, "threshold": 0},
        {"collection": COLLECTION, "threshold": 1.5},
        {"collection": COLLECTION, "k": 0},
        {"collection": COLLECTION, "path_prefix": "relative/path"},
        {"collection": "no spaces", "threshold": 0.9},
    ):
        r = requests.post(url, json=body, timeout=10)
        assert r.status_code == 400 and r.json()["error"], (body, r.text)
    r = requests.post(url, json={"collection": "no_such_collection_h4"}, timeout=10)
    assert r.status_code == 404 and "no_such_collection_h4" in r.json()["message"]

    unknown = requests.get(f"{stack.base}/api/v1/jobs/{'0' * 32}/groups", timeout=10)
    assert unknown.status_code == 404 and unknown.json()["error"] == "not_found"
    index_jobs = requests.get(f"{stack.base}/api/v1/jobs?type=index&limit=1", timeout=10).json()
    other = index_jobs["jobs"][0]["id"]
    r = requests.get(f"{stack.base}/api/v1/jobs/{other}/groups", timeout=10)
    assert r.status_code == 404 and "not a duplicates job" in r.json()["message"]


def test_groups_of_an_unfinished_job_are_a_409_and_pages_are_capped(web: WebApp) -> None:
    jobs = JobStore(connect(web.redis_url), 3600)
    job_id = jobs.create("duplicates", {"collection": "x"})
    r = web.client.get(f"/api/v1/jobs/{job_id}/groups")
    assert r.status_code == 409 and r.get_json()["error"] == "conflict"
    jobs.start(job_id)
    assert web.client.get(f"/api/v1/jobs/{job_id}/groups").status_code == 409
    group = {"size": 2, "keep": "k", "members": []}
    DuplicateStore(connect(web.redis_url), 3600).save_groups(job_id, [group] * 5, 3600)
    jobs.transition(job_id, JobState.SUCCEEDED, result={"groups": 5})
    r = web.client.get(f"/api/v1/jobs/{job_id}/groups?page=2&per_page=2")
    assert r.status_code == 200
    assert r.get_json() == {"page": 2, "per_page": 2, "total": 5, "groups": [group] * 2}
    assert web.client.get(f"/api/v1/jobs/{job_id}/groups?per_page=201").status_code == 400
    assert web.client.get(f"/api/v1/jobs/{job_id}/groups?page=0").status_code == 400
    # Deleting the job deletes its groups.
    assert web.client.delete(f"/api/v1/jobs/{job_id}").status_code == 204
    assert DuplicateStore(connect(web.redis_url), 3600).page(job_id, 1, 10) == (0, [])


def _bulk_pool_child(stack: Stack) -> psutil.Process:
    """The pool process of the stack's bulk model worker (where a duplicates job runs)."""
    conf = stack.data / "run" / "supervisord.conf"
    out = subprocess.run(
        [SUPERVISORCTL, "-c", str(conf), "pid", "models"],
        capture_output=True,
        text=True,
        timeout=60,
    ).stdout.strip()
    (child,) = psutil.Process(int(out)).children()
    return child


def test_a_worker_killed_mid_job_resumes_from_its_checkpoint(stack: Stack, dup_set: DupSet) -> None:
    """SIGKILL of the pool process between checkpoints (every 4 images, 2 per search in
    this stack): the task comes back, continues after the last checkpoint, and the
    groups and counts are exactly those of an undisturbed run."""
    r = connect(stack.redis_url)
    total = len(dup_set.files)
    for _attempt in range(3):
        victim = _bulk_pool_child(stack)
        job_id = submit(
            stack.base, "duplicates", json={"collection": COLLECTION, "threshold": THRESHOLD}
        )
        killed_at = None
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            state, done = r.hmget(f"visionnet:job:{job_id}", "state", "done")
            if state != "running" and state != "queued":
                break  # finished before the kill could land: try again
            if state == "running" and 4 <= int(done or 0) < total:
                os.kill(victim.pid, signal.SIGKILL)
                killed_at = int(done or 0)
                break
            time.sleep(0.002)
        job = wait_job(stack.base, job_id, timeout=180)
        if killed_at is not None:
            break
    assert killed_at is not None, "the job ended before a kill could land, three times"
    assert job["state"] == "succeeded", job
    assert (job["progress"]["done"], job["progress"]["total"]) == (total, total)
    assert job["result"]["images"] == total
    # Resumed after the checkpoint the kill found, not from the start.
    assert killed_at <= job["result"]["resumed_from"] < total
    _check_groups(_all_groups(stack.base, job_id), dup_set)
    # The checkpoint went with the job's end.
    assert not r.exists(f"visionnet:job:{job_id}:dups", f"visionnet:job:{job_id}:dups:pairs")


def test_the_cli_prints_the_groups_as_json_and_csv(stack: Stack, dup_set: DupSet) -> None:
    out = cli(stack, "duplicates", COLLECTION, "--threshold", str(THRESHOLD), "--json")
    assert out.returncode == 0, out.stderr
    printed = json.loads(out.stdout)
    groups = printed["groups"]
    _check_groups(groups, dup_set)
    result = printed["result"]
    assert (result["collection"], result["threshold"], result["images_in_groups"]) == (
        COLLECTION,
        THRESHOLD,
        11,
    )

    table = cli(stack, "duplicates", COLLECTION, "-t", str(THRESHOLD), "--csv")
    assert table.returncode == 0, table.stderr
    rows = list(csv.DictReader(io.StringIO(table.stdout)))
    assert len(rows) == 11
    assert [r["path"] for r in rows] == [m["path"] for g in groups for m in g["members"]]
    assert [r["keep"] for r in rows if r["keep"] == "True"] == ["True"] * 4


def test_groups_rules_on_vectors_alone() -> None:
    """Keep: most pixels, then the larger file, then the smaller id; ties of size by
    the best score, then the keep id; pairs below the threshold or of unknown ids ignored."""
    rng = np.random.default_rng(0)
    base = rng.standard_normal((3, 8)).astype(np.float32)
    vectors = np.stack([base[0], base[0] * 2, base[1], base[1] + 0.01, base[2], base[2]])
    images = Images(
        ids=["a", "b", "c", "d", "e", "f"],
        paths=[f"/p/{x}" for x in "abcdef"],
        sizes=[10, 5, 7, 7, 1, 1],
        widths=[1, 1, 2, 2, 1, 1],
        heights=[1, 1, 2, 2, 1, 1],
        vectors=normalised(vectors),
    )
    hits = [[("a", 1.0), ("b", 0.99), ("x", 0.99), ("c", 0.5)], [("b", 1.0), ("a", 0.99)]]
    assert pairs_of(["a", "b"], hits, 0.9, set(images.ids)) == [("a", "b")]
    groups = build_groups(images, [("a", "b"), ("c", "d"), ("e", "f"), ("e", "f")])
    # All of size 2: e/f and a/b are identical vectors (1.0), c/d close: ties by keep id.
    assert [g["keep"] for g in groups] == ["a", "e", "c"]
    assert [m["id"] for m in groups[2]["members"]] == ["c", "d"]
    assert groups[0]["members"][1]["score"] == 1.0
    assert groups[2]["members"][1]["score"] < 1.0
