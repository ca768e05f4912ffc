"""Flower with basic auth on the live stack's broker: 401 without, 200 with, workers listed.

Workers start with task events off (``flower.task_events``); Flower asks for
them, so the tasks of a job run while it watches show up in it.
"""

from __future__ import annotations

import subprocess
import time
from collections.abc import Iterator

import pytest
import requests

from tests.conftest import VISIONNET, Stack
from tests.helpers import free_port, submit, wait_job, write_images

AUTH = ("watcher", "s3cret-pw")


@pytest.fixture(scope="module")
def flower(stack: Stack) -> Iterator[str]:
    port = free_port()
    env = {**stack.env, "VISIONNET_FLOWER__PORT": str(port)}
    env["VISIONNET_FLOWER__BASIC_AUTH"] = ":".join(AUTH)
    proc = subprocess.Popen(
        [VISIONNET, "flower"], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            try:
                requests.get(f"{base}/healthcheck", timeout=2)
                break
            except requests.ConnectionError:
                time.sleep(0.3)
        yield base
    finally:
        proc.terminate()
        proc.wait(timeout=30)


def test_flower_asks_for_credentials_and_lists_the_workers(flower: str) -> None:
    assert requests.get(f"{flower}/", timeout=10).status_code == 401
    assert requests.get(f"{flower}/", auth=("watcher", "wrong"), timeout=10).status_code == 401
    assert requests.get(f"{flower}/", auth=AUTH, timeout=10).status_code == 200
    deadline = time.monotonic() + 60
    names: list[str] = []
    while time.monotonic() < deadline and not any(n.startswith("models") for n in names):
        r = requests.get(f"{flower}/api/workers", params={"refresh": "1"}, auth=AUTH, timeout=30)
        assert r.status_code == 200
        names = list(r.json())
        time.sleep(0.5)
    assert any(n.startswith("models") for n in names), names
    assert any(n.startswith("interactive") for n in names), names
    metrics = requests.get(f"{flower}/metrics", auth=AUTH, timeout=10)
    assert metrics.status_code == 200 and "flower_" in metrics.text


def test_flower_turns_task_events_on_and_sees_a_job(flower: str, stack: Stack) -> None:
    (image,) = write_images(stack.root / "flower-events", range(1))
    deadline = time.monotonic() + 60
    seen = False
    while time.monotonic() < deadline and not seen:
        job_id = submit(stack.base, "classify", json={"paths": [str(image)]})
        assert wait_job(stack.base, job_id)["state"] == "succeeded"
        for _ in range(10):  # events reach Flower shortly after the task ends
            r = requests.get(f"{flower}/api/tasks", auth=AUTH, timeout=30)
            assert r.status_code == 200
            tasks = r.json().values()
            seen = any(job_id in f"{t.get('args')}{t.get('kwargs')}" for t in tasks)
            if seen:
                break
            time.sleep(0.5)
    assert seen, "Flower never saw a task of a job run while it watched"
