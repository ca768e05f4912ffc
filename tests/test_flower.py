"""Flower with basic auth on the live stack's broker: 401 without, 200 with, workers listed."""

from __future__ import annotations

import subprocess
import time
from collections.abc import Iterator

import pytest
import requests

from tests.conftest import VISIONNET, Stack
from tests.helpers import free_port

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
