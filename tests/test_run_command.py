"""The README's run command: ``visionnet up`` on the demo profile, stopped with Ctrl-C."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import psutil
import pytest
import requests

from tests.conftest import VISIONNET, Stack, stack_env, start_up, stop
from tests.helpers import image_bytes, submit, wait_healthy, wait_job
from visionnet.workers.models.shipped import DEMO_LABELS, SHIPPED_DEMO_DIR


def test_up_serves_the_trained_demo_model_and_stops_cleanly(tmp_path: Path) -> None:
    root = tmp_path / "root"
    root.mkdir()
    env = stack_env(tmp_path, tmp_path / "unused", root, VISIONNET_PROFILE="demo")
    log = tmp_path / "up.log"
    proc = start_up(env, log, "--no-flower")
    base = f"http://127.0.0.1:{env['VISIONNET_WEB__PORT']}"
    try:
        wait_healthy(base, timeout=180)
        files = [("files", ("a.png", image_bytes(9), "image/png"))]
        job = wait_job(base, submit(base, "classify", files=files))
        children = psutil.Process(proc.pid).children(recursive=True)
    finally:
        rc = stop(proc)
    assert job["state"] == "succeeded", job
    labels = {p["label"] for p in job["result"]["images"][0]["predictions"]}
    assert labels and labels <= set(DEMO_LABELS)
    assert job["result"]["model"]["name"] == "builtin:demo-cifar10"
    assert str(SHIPPED_DEMO_DIR) not in json.dumps(job)
    assert job["result"]["model"]["random_weights"] is False
    assert "notice" not in job["result"]
    assert rc == 0, log.read_text()[-3000:]
    assert len(children) >= 5
    assert not [c for c in children if c.is_running() and c.status() != psutil.STATUS_ZOMBIE]
    with pytest.raises(requests.ConnectionError):
        requests.get(base + "/api/v1/health", timeout=2)


def test_cli_help_lists_commands() -> None:
    out = subprocess.run([VISIONNET, "--help"], capture_output=True, text=True, check=True)
    for command in ("up", "web", "worker", "flower", "train-demo"):
        assert command in out.stdout


def test_a_second_store_writer_is_refused(stack: Stack) -> None:
    env = dict(stack.env, VISIONNET_MILVUS__WRITER_LOCK_WAIT_S="1")
    out = subprocess.run(
        [VISIONNET, "worker", "store", "--name", "second-store@%h"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert out.returncode != 0
    assert "exactly one writer" in out.stderr
