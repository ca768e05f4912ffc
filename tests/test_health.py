"""Health and /metrics read the workers' liveness records; they never broadcast to workers.

The no-broadcast and expiry tests run on the app alone (Flask's test client, a
private Redis whose every command MONITOR sees); the SIGKILL test runs a real
worker beside the live stack.
"""

from __future__ import annotations

import os
import signal
import subprocess
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import requests

from tests.conftest import VISIONNET, Stack
from tests.webapp import WebApp
from visionnet.core.liveness import WorkerRecord, WorkerRegistry
from visionnet.core.redis_conn import connect

DONE = "test-health-monitor-done"


@contextmanager
def monitored(redis_url: str) -> Iterator[list[str]]:
    """Every command the Redis at ``redis_url`` runs inside the block, as MONITOR shows it."""
    seen: list[str] = []
    client = connect(redis_url, 30.0)
    ready = threading.Event()

    def watch() -> None:
        with client.monitor() as monitor:
            ready.set()
            while True:
                command = str(monitor.next_command()["command"])
                if DONE in command:
                    return
                seen.append(command)

    thread = threading.Thread(target=watch, daemon=True)
    thread.start()
    ready.wait(10)
    time.sleep(0.2)  # MONITOR is registered once its reply is read; give it that moment
    try:
        yield seen
    finally:
        connect(redis_url).echo(DONE)
        thread.join(30)


def test_health_and_metrics_make_no_broadcast(web: WebApp) -> None:
    registry = WorkerRegistry(connect(web.redis_url))
    registry.beat(record("models@a", ["models", "bulk"], ttl_s=60))
    with monitored(web.redis_url) as seen:
        for _ in range(5):
            assert web.client.get("/api/v1/health").status_code == 503  # no store worker
            assert web.client.get("/metrics").status_code == 200
    assert seen, "MONITOR saw nothing: the check itself is broken"
    # Celery's inspect/ping publish on the broker's pidbox fanout exchange.
    assert not [c for c in seen if "pidbox" in c.lower() or c.upper().startswith("PUBLISH")], seen
    registry.forget("models@a")


def test_health_lists_live_records_and_drops_expired_ones(web: WebApp) -> None:
    registry = WorkerRegistry(connect(web.redis_url))
    registry.beat(record("models@h1", ["models", "bulk"], ttl_s=60))
    registry.beat(record("store@h1", ["store"], ttl_s=60))
    registry.beat(record("models@h2", ["bulk"], ttl_s=0.3))
    try:
        body = web.client.get("/api/v1/health").json
        assert body is not None
        assert body["status"] == "ok" and body["redis"] is True
        queues = {q["queue"]: q["workers"] for q in body["queues"]}
        assert queues == {
            "models": ["models@h1"],
            "bulk": ["models@h1", "models@h2"],
            "store": ["store@h1"],
        }
        hosts = {w["name"]: (w["host"], w["pid"]) for w in body["workers"]}
        assert hosts["models@h2"] == ("h2", 4242)
        metrics = web.client.get("/metrics").get_data(as_text=True)
        assert 'visionnet_workers{queue="bulk"} 2.0' in metrics

        gone = wait_for(lambda: queues_of(web)["bulk"] == ["models@h1"], 30)
        assert gone, "an expired record stayed in health"
        assert 'visionnet_workers{queue="bulk"} 1.0' in web.client.get("/metrics").get_data(
            as_text=True
        )
    finally:
        registry.forget("models@h1")
        registry.forget("store@h1")
    assert web.client.get("/api/v1/health").status_code == 503


def test_a_killed_worker_leaves_health_after_its_ttl(stack: Stack, tmp_path: Path) -> None:
    name = "models-killed@host-k"
    env = dict(
        stack.env, VISIONNET_STACK__LIVENESS_INTERVAL_S="0.5", VISIONNET_STACK__LIVENESS_TTL_S="3"
    )
    log = tmp_path / "killed.log"
    proc = start_bulk_worker(name, env, log)
    try:
        assert wait_for(lambda: name in bulk_workers(stack), 120), log.read_text()[-3000:]
        workers = {w["name"]: w for w in health(stack)["workers"]}
        assert workers[name]["pid"] == proc.pid and workers[name]["queues"] == ["bulk"]
    finally:
        os.killpg(proc.pid, signal.SIGKILL)  # the worker and its pool: no goodbye written
        proc.wait()
    assert wait_for(lambda: name not in bulk_workers(stack), 60), "still listed after SIGKILL"
    assert bulk_workers(stack), "the stack's own bulk worker must still be listed"


def test_a_stopped_worker_leaves_health_at_once(stack: Stack, tmp_path: Path) -> None:
    name = "models-stopped@host-s"
    env = dict(stack.env, VISIONNET_STACK__LIVENESS_TTL_S="600")  # expiry cannot be the cause
    log = tmp_path / "stopped.log"
    proc = start_bulk_worker(name, env, log)
    try:
        assert wait_for(lambda: name in bulk_workers(stack), 120), log.read_text()[-3000:]
    finally:
        proc.send_signal(signal.SIGTERM)  # warm shutdown: the worker clears its record
        assert proc.wait(timeout=120) == 0, log.read_text()[-3000:]
    assert name not in bulk_workers(stack)


def start_bulk_worker(name: str, env: dict[str, str], log: Path) -> subprocess.Popen[bytes]:
    """A second bulk worker beside the stack's, in its own session (killable as a group)."""
    return subprocess.Popen(
        [VISIONNET, "worker", "models", "--name", name, "--queues", "bulk"],
        env=env,
        cwd=log.parent,
        stdout=log.open("wb"),
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )


def record(name: str, queues: list[str], ttl_s: float) -> WorkerRecord:
    return WorkerRecord(
        name=name,
        host=name.split("@")[1],
        pid=4242,
        queues=queues,
        time=time.time(),
        ttl_s=ttl_s,
    )


def queues_of(web: WebApp) -> dict[str, list[str]]:
    body = web.client.get("/api/v1/health").json
    assert body is not None
    return {q["queue"]: q["workers"] for q in body["queues"]}


def health(stack: Stack) -> dict[str, Any]:
    body: dict[str, Any] = requests.get(f"{stack.base}/api/v1/health", timeout=10).json()
    return body


def bulk_workers(stack: Stack) -> list[str]:
    return next(q["workers"] for q in health(stack)["queues"] if q["queue"] == "bulk")


def wait_for(condition: Any, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.2)
    return False
