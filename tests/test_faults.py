"""Faults, tested: real processes of a running stack killed with SIGKILL, then counted.

A slow model (wide, at a large input size) keeps each chunk busy for a couple
of seconds, so a kill lands while work is in flight. After each kill the job
must finish with exact counts, and the store must hold each good image once.
"""

from __future__ import annotations

import signal
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psutil
import pytest
import requests
from pymilvus import MilvusClient

from tests.conftest import stack_env, start_up, stop
from tests.helpers import image_bytes, submit, wait_healthy, wait_job, with_milvus, write_images
from tests.tiny_model import build_tiny_model
from visionnet.core.redis_conn import connect

pytestmark = pytest.mark.timeout(600)


class FaultStack:
    def __init__(self, tmp: Path) -> None:
        self.tmp = tmp
        self.root = tmp / "root"
        self.root.mkdir()
        model = build_tiny_model(tmp / "slow-model", hidden_sizes=(64, 128), image_size=512)
        self.env = stack_env(tmp, model, self.root)
        self.base = f"http://127.0.0.1:{self.env['VISIONNET_WEB__PORT']}"
        self.milvus_uri = f"http://127.0.0.1:{self.env['VISIONNET_MILVUS__EMBEDDED_PORT']}"
        self.redis_url = f"redis+socket://{tmp / 'data' / 'redis' / 'redis.sock'}"
        self.proc: subprocess.Popen[bytes] | None = None
        self.starts = 0

    def up(self) -> None:
        self.starts += 1
        log = self.tmp / f"up-{self.starts}.log"
        self.proc = start_up(self.env, log, "--no-flower")
        try:
            wait_healthy(self.base, timeout=180)
        except AssertionError:
            self.down()
            print(log.read_text()[-5000:])
            raise

    def down(self) -> None:
        if self.proc is not None:
            stop(self.proc)
            self.proc = None

    def kill_everything(self) -> None:
        """kill -9 of the whole stack at once, as a power cut of the processes would."""
        assert self.proc is not None
        # honcho starts each process in a process group of its own: kill every one.
        everyone = [psutil.Process(self.proc.pid), *psutil.Process(self.proc.pid).children(True)]
        assert len(everyone) >= 5
        for p in everyone:
            p.send_signal(signal.SIGKILL)
        self.proc.wait()
        self.proc = None
        _gone, alive = psutil.wait_procs(everyone[1:], timeout=30)
        assert alive == []
        with pytest.raises(requests.ConnectionError):
            requests.get(self.base + "/api/v1/health", timeout=2)

    def pool_child(self, role: str) -> psutil.Process:
        """The Celery pool process of ``visionnet worker <role>``: where its tasks run."""
        assert self.proc is not None
        for p in psutil.Process(self.proc.pid).children(recursive=True):
            cmd, parent = p.cmdline(), p.parent()
            # A forked pool process has its parent's command line; the parent's
            # own parent is the shell that started it.
            if f"worker {role}" in " ".join(cmd) and parent and parent.cmdline() == cmd:
                return p
        raise AssertionError(f"no pool process for worker {role}")

    def count(self, collection: str) -> int:
        def count(client: MilvusClient) -> int:
            client.load_collection(collection)
            rows = client.query(collection, filter="", output_fields=["count(*)"])
            return int(rows[0]["count(*)"])

        return int(with_milvus(self.milvus_uri, count))


@pytest.fixture(scope="module")
def fault_stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[FaultStack]:
    stack = FaultStack(tmp_path_factory.mktemp("faults"))
    stack.up()
    yield stack
    stack.down()


def progress(stack: FaultStack, job_id: str) -> dict[str, Any]:
    job: dict[str, Any] = requests.get(f"{stack.base}/api/v1/jobs/{job_id}", timeout=10).json()
    return job


def wait_until_done_at_least(stack: FaultStack, job_id: str, done: int) -> dict[str, Any]:
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        job = progress(stack, job_id)
        if job["progress"]["done"] >= done or (
            job["state"] != "queued" and job["state"] != "running"
        ):
            return job
        time.sleep(0.05)
    raise AssertionError(f"job {job_id} never reached {done} done")


def wait_for_key(stack: FaultStack, key: str) -> None:
    client = connect(stack.redis_url)
    deadline = time.monotonic() + 120
    while not client.exists(key):
        assert time.monotonic() < deadline, f"{key} never appeared"
        time.sleep(0.005)


@pytest.mark.parametrize("role", ["models", "store"])
def test_index_job_survives_a_killed_pool_process(fault_stack: FaultStack, role: str) -> None:
    folder = fault_stack.root / f"kill_{role}"
    write_images(folder, range(1000, 1096), fmt="JPEG")
    (folder / "broken.jpg").write_bytes(b"\xff\xd8\xff not really a jpeg" * 8)
    collection = f"kill_{role}"
    job_id = submit(
        fault_stack.base, "index", json={"source": {"path": str(folder)}, "collection": collection}
    )
    if role == "models":
        before = wait_until_done_at_least(fault_stack, job_id, 16)  # chunk 0 is written
        assert before["state"] == "running", before  # the kill lands mid-embed
    else:
        # The writer records which rows of a chunk are new just before it writes them:
        # killing it then lands between that decision and the chunk's report.
        wait_for_key(fault_stack, f"visionnet:job:{job_id}:decision:2")
    victim = fault_stack.pool_child(role)
    victim.send_signal(signal.SIGKILL)
    victim.wait(10)

    job = wait_job(fault_stack.base, job_id, timeout=300)
    assert job["state"] == "succeeded", job
    result = job["result"]
    assert result["total"] == 97
    assert (result["indexed"], result["skipped"], result["failed"]) == (96, 0, 1)
    assert job["progress"] == {"total": 97, "done": 97, "failed": 1}
    assert fault_stack.count(collection) == 96
    assert fault_stack.pool_child(role).pid != victim.pid  # Celery started a new one


def test_classify_job_survives_a_killed_model_worker_process(fault_stack: FaultStack) -> None:
    files = [("files", (f"c{i}.png", image_bytes(2000 + i), "image/png")) for i in range(40)]
    job_id = submit(fault_stack.base, "classify", files=files, data={"top_k": "2"})
    before = wait_until_done_at_least(fault_stack, job_id, 8)
    assert before["state"] == "running", before
    fault_stack.pool_child("models").send_signal(signal.SIGKILL)
    job = wait_job(fault_stack.base, job_id, timeout=300)
    assert job["state"] == "succeeded", job
    assert job["progress"] == {"total": 40, "done": 40, "failed": 0}  # redelivered, counted once
    assert [im["name"] for im in job["result"]["images"]] == [f"c{i}.png" for i in range(40)]


def test_job_records_survive_a_kill_of_the_whole_stack(fault_stack: FaultStack) -> None:
    client = connect(fault_stack.redis_url)
    for name, want in {"appendonly": "yes", "appendfsync": "everysec", "save": "60 1"}.items():
        assert client.config_get(name)[name] == want
    files = [("files", ("keep.png", image_bytes(3000), "image/png"))]
    finished = wait_job(fault_stack.base, submit(fault_stack.base, "classify", files=files))
    assert finished["state"] == "succeeded"
    time.sleep(1.5)  # appendfsync everysec: at most one second of writes is at risk
    fault_stack.kill_everything()
    fault_stack.up()
    again = progress(fault_stack, finished["id"])
    assert again == finished


def test_cancel_stops_an_index_job_mid_way(fault_stack: FaultStack) -> None:
    """With the slow model the job is certainly mid-way when cancelled: no race to excuse."""
    folder = fault_stack.root / "cancel_mid"
    write_images(folder, range(4000, 4096), fmt="JPEG")
    body = {"source": {"path": str(folder)}, "collection": "cancel_mid"}
    job_id = submit(fault_stack.base, "index", json=body)
    assert wait_until_done_at_least(fault_stack, job_id, 16)["state"] == "running"
    r = requests.delete(f"{fault_stack.base}/api/v1/jobs/{job_id}", timeout=10)
    assert r.status_code == 202 and r.json()["state"] == "cancelled"
    time.sleep(6)  # long enough for several more chunks, had the job gone on
    job = progress(fault_stack, job_id)
    assert job["state"] == "cancelled" and job["finished_at"] is not None
    stored = fault_stack.count("cancel_mid")
    assert 16 <= stored <= 64  # at most the chunks already in flight were written
    again = requests.delete(f"{fault_stack.base}/api/v1/jobs/{job_id}", timeout=10)
    assert again.status_code == 409
