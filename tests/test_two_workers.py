"""Two model worker processes, as on two hosts, share one index job through one Redis.

The second worker is started the way an operator starts one on another host:
``visionnet worker models`` with its own node name and working directory,
pointed at the same Redis and store by the environment.
"""

from __future__ import annotations

import os
import signal
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests

from tests.conftest import VISIONNET, Stack
from tests.helpers import submit, wait_job, write_images

SECOND = "models-b@host-b"
FILES = 2000


@pytest.fixture
def second_worker(stack: Stack, tmp_path: Path) -> Iterator[subprocess.Popen[bytes]]:
    workdir = tmp_path / "host-b"
    workdir.mkdir()
    log = tmp_path / "host-b.log"
    proc = subprocess.Popen(
        [VISIONNET, "worker", "models", "--name", SECOND, "--queues", "bulk"],
        env=stack.env,
        cwd=workdir,
        stdout=log.open("wb"),
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    try:
        _wait_consuming(stack, SECOND, log)
        yield proc
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()


def _wait_consuming(stack: Stack, name: str, log: Path, timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        health = requests.get(f"{stack.base}/api/v1/health", timeout=30).json()
        bulk = next(q for q in health["queues"] if q["queue"] == "bulk")
        if name in bulk["workers"]:
            return
        time.sleep(0.5)
    raise AssertionError(f"{name} never consumed the bulk queue: {log.read_text()[-3000:]}")


def test_two_workers_share_a_job_and_a_rerun_embeds_nothing(
    stack: Stack, second_worker: subprocess.Popen[bytes]
) -> None:
    folder = stack.root / "two-workers"
    write_images(folder, range(20000, 20000 + FILES))
    body = {"source": {"path": str(folder)}, "collection": "two_workers"}
    job_id = submit(stack.base, "index", json=body)

    seen: list[int] = []
    deadline = time.monotonic() + 600
    while time.monotonic() < deadline:
        job = requests.get(f"{stack.base}/api/v1/jobs/{job_id}", timeout=30).json()
        seen.append(job["progress"]["done"])
        if job["state"] in {"succeeded", "failed", "cancelled"}:
            break
        time.sleep(0.2)
    assert job["state"] == "succeeded", job
    assert seen == sorted(seen), "progress went backwards"
    assert job["result"]["indexed"] == FILES and job["progress"]["done"] == FILES

    # Both nodes took chunks, and every chunk is accounted to one of them.
    workers = job["result"]["workers"]
    assert SECOND in workers and len(workers) == 2, workers
    assert all(n > 0 for n in workers.values()), workers
    assert sum(workers.values()) == FILES // 16  # chunk size 16 in the test stack

    again = wait_job(stack.base, submit(stack.base, "index", json=body), timeout=600)
    assert again["state"] == "succeeded"
    assert again["result"]["indexed"] == 0 and again["result"]["skipped"] == FILES
    assert again["result"]["stage_seconds"]["embed"] == 0.0  # no forward pass ran
