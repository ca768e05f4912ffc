"""Faults, tested: real processes of a running stack killed with SIGKILL, then counted.

A slow model (wide, at a large input size) keeps each chunk busy for a couple
of seconds, so a kill lands while work is in flight. After each kill the job
must finish with exact counts, and the store must hold each good image once.
The stack runs under supervisord as users run it; its timeouts are shortened
(redelivery 15 s, writer lock 6 s) so that recoveries fit in a test.
"""

from __future__ import annotations

import base64
import json
import os
import re
import signal
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psutil
import pytest
import requests
from pymilvus import MilvusClient

from tests.conftest import SUPERVISORCTL, stack_env, start_up, stop, stop_later
from tests.helpers import (
    counts,
    image_bytes,
    submit,
    wait_healthy,
    wait_job,
    with_milvus,
    write_images,
)
from tests.tiny_model import build_tiny_model
from visionnet.core.redis_conn import connect
from visionnet.workers.store_writer.writer_lock import LOCK_KEY, hold_writer_lock

pytestmark = pytest.mark.timeout(600)


class FaultStack:
    def __init__(self, tmp: Path, **extra_env: str) -> None:
        self.tmp = tmp
        self.root = tmp / "root"
        self.root.mkdir()
        model = build_tiny_model(tmp / "slow-model", hidden_sizes=(64, 128), image_size=512)
        self.env = stack_env(
            tmp,
            model,
            self.root,
            VISIONNET_JOBS__REDELIVERY_TIMEOUT_S="15",
            VISIONNET_JOBS__STALL_TIMEOUT_S="240",
            VISIONNET_MILVUS__WRITER_LOCK_TTL_S="6",
            VISIONNET_MILVUS__WRITER_LOCK_WAIT_S="10",
            VISIONNET_MILVUS__MAX_STAGED_CHUNKS="4",
            # The kills below then also hit programs started through ``nice``.
            VISIONNET_STACK__STORE_NICE="5",
            **extra_env,
        )
        self.base = f"http://127.0.0.1:{self.env['VISIONNET_WEB__PORT']}"
        self.milvus_uri = f"http://127.0.0.1:{self.env['VISIONNET_MILVUS__EMBEDDED_PORT']}"
        self.redis_url = f"redis+socket://{tmp / 'data' / 'redis' / 'redis.sock'}"
        self.proc: subprocess.Popen[bytes] | None = None
        self.starts = 0

    def up(self) -> None:
        self.starts += 1
        log = self.tmp / f"up-{self.starts}.log"
        self.proc = start_up(self.env, log)
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

    def down_later(self) -> None:
        """Ctrl-C, its orderly stop overlapping the tests that follow (a fixture's
        teardown: the next stack has its own data dir and ports)."""
        if self.proc is not None:
            stop_later(self.proc)
            self.proc = None

    def ctl(self, *args: str) -> str:
        """supervisorctl against this stack, as an operator would run it."""
        conf = self.tmp / "data" / "run" / "supervisord.conf"
        out = subprocess.run(
            [SUPERVISORCTL, "-c", str(conf), *args],
            capture_output=True,
            text=True,
            timeout=60,
        )
        return out.stdout.strip()

    def pid(self, program: str) -> int:
        """The pid supervisord holds for one of its programs (0 while it is not running)."""
        out = self.ctl("pid", program)
        return int(out) if out.isdigit() else 0

    def wait_restarted(self, program: str, old_pid: int) -> int:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            pid = self.pid(program)
            if pid and pid != old_pid:
                return pid
            time.sleep(0.2)
        raise AssertionError(f"supervisord did not restart {program}")

    def kill_everything(self) -> None:
        """kill -9 of the whole stack at once, as a power cut of the processes would."""
        assert self.proc is not None
        # supervisord starts each process in a process group of its own: kill every one.
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
            try:
                cmd, parent = p.cmdline(), p.parent()
                parent_cmd = parent.cmdline() if parent else None
            except psutil.Error:  # gone, or an earlier victim not yet reaped (a zombie)
                continue
            # A forked pool process has its parent's command line; the parent's
            # own parent is supervisord.
            if f"worker {role}" in " ".join(cmd) and parent_cmd == cmd:
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
    stack.down_later()


@pytest.fixture(scope="module")
def server_fault_stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[FaultStack]:
    """A real Milvus server (milvus.engine = "server"), model workers writing to it directly."""
    stack = FaultStack(
        tmp_path_factory.mktemp("faults-server"),
        VISIONNET_MILVUS__ENGINE="server",
        VISIONNET_MILVUS__DIRECT_WRITES="true",
    )
    stack.up()
    yield stack
    stack.down_later()


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


def test_the_store_path_yields_the_cpu_to_the_models(fault_stack: FaultStack) -> None:
    """stack.store_nice (5 here): Milvus Lite and the store writer niced, the workers not."""
    niceness = {name: psutil.Process(fault_stack.pid(name)).nice() for name in
                ("milvus", "store", "models", "interactive", "web")}  # fmt: skip
    base = os.nice(0)  # whatever niceness the test run itself has
    assert niceness == {"milvus": base + 5, "store": base + 5} | {
        "models": base,
        "interactive": base,
        "web": base,
    }
    # nice execs the program: supervisord holds the program's own pid.
    assert "milvus-lite" in " ".join(psutil.Process(fault_stack.pid("milvus")).cmdline())


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
    assert counts(job) == {"total": 97, "done": 97, "failed": 1}
    assert fault_stack.count(collection) == 96
    assert fault_stack.pool_child(role).pid != victim.pid  # Celery started a new one


def test_classify_job_survives_a_killed_interactive_worker(fault_stack: FaultStack) -> None:
    """The interactive worker runs tasks in threads: SIGKILL takes the whole process."""
    files = [("files", (f"c{i}.png", image_bytes(2000 + i), "image/png")) for i in range(40)]
    job_id = submit(fault_stack.base, "classify", files=files, data={"top_k": "2"})
    before = wait_until_done_at_least(fault_stack, job_id, 8)
    assert before["state"] == "running", before
    victim = fault_stack.pid("interactive")
    os.kill(victim, signal.SIGKILL)
    fault_stack.wait_restarted("interactive", victim)
    # Its unacknowledged message comes back after jobs.redelivery_timeout_s (15 s here).
    job = wait_job(fault_stack.base, job_id, timeout=300)
    assert job["state"] == "succeeded", job
    assert counts(job) == {"total": 40, "done": 40, "failed": 0}  # redelivered, counted once
    assert [im["name"] for im in job["result"]["images"]] == [f"c{i}.png" for i in range(40)]


def test_job_records_survive_a_kill_of_the_whole_stack(fault_stack: FaultStack) -> None:
    client = connect(fault_stack.redis_url)
    for name, want in {"appendonly": "yes", "appendfsync": "always", "save": "60 1"}.items():
        assert client.config_get(name)[name] == want
    files = [("files", ("keep.png", image_bytes(3000), "image/png"))]
    finished = wait_job(fault_stack.base, submit(fault_stack.base, "classify", files=files))
    assert finished["state"] == "succeeded"
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
    r = requests.post(f"{fault_stack.base}/api/v1/jobs/{job_id}/cancel", timeout=10)
    assert r.status_code == 202 and r.json()["state"] == "cancelled"
    time.sleep(6)  # long enough for several more chunks, had the job gone on
    job = progress(fault_stack, job_id)
    assert job["state"] == "cancelled" and job["finished_at"] is not None
    stored = fault_stack.count("cancel_mid")
    assert 16 <= stored <= 64  # at most the chunks already in flight were written
    again = requests.post(f"{fault_stack.base}/api/v1/jobs/{job_id}/cancel", timeout=10)
    assert again.status_code == 409
    # DELETE removes the record; the vectors written stay in the collection.
    assert (
        requests.delete(f"{fault_stack.base}/api/v1/jobs/{job_id}", timeout=10).status_code == 204
    )
    assert requests.get(f"{fault_stack.base}/api/v1/jobs/{job_id}", timeout=10).status_code == 404
    assert (
        requests.delete(f"{fault_stack.base}/api/v1/jobs/{job_id}", timeout=10).status_code == 404
    )
    assert fault_stack.count("cancel_mid") == stored


def index_folder(stack: FaultStack, name: str) -> tuple[str, str]:
    """Submit an index job over 96 good JPEGs and one broken file (7 chunks of 16)."""
    folder = stack.root / name
    write_images(folder, range(1000, 1096), fmt="JPEG")
    (folder / "broken.jpg").write_bytes(b"\xff\xd8\xff not really a jpeg" * 8)
    body = {"source": {"path": str(folder)}, "collection": name}
    return submit(stack.base, "index", json=body), name


def assert_exact(stack: FaultStack, job: dict[str, Any], collection: str) -> None:
    assert job["state"] == "succeeded", job
    result = job["result"]
    assert (result["total"], result["indexed"], result["skipped"], result["failed"]) == (
        97,
        96,
        0,
        1,
    )
    assert counts(job) == {"total": 97, "done": 97, "failed": 1}
    assert stack.count(collection) == 96  # each good image once: no loss, no duplicate


@pytest.mark.parametrize(
    "program", ["models", "interactive", "store", "milvus", "redis", "web", "flower"]
)
def test_index_job_survives_a_killed_supervised_process(
    fault_stack: FaultStack, program: str
) -> None:
    """SIGKILL of a worker's parent (its pool process dies with it), Milvus, Redis, web, Flower."""
    job_id, collection = index_folder(fault_stack, f"killed_{program}")
    assert wait_until_done_at_least(fault_stack, job_id, 16)["state"] == "running"
    victim = fault_stack.pid(program)
    assert victim
    os.kill(victim, signal.SIGKILL)
    fault_stack.wait_restarted(program, victim)  # supervisord brings it back
    job = wait_job(fault_stack.base, job_id, timeout=300, through_outages=True)
    assert_exact(fault_stack, job, collection)


def test_writer_commits_staged_chunks_in_groups_and_bounds_the_backlog(
    fault_stack: FaultStack,
) -> None:
    """Store writer stopped: chunks pile up to max_staged_chunks (4), then the embedder waits.

    Started again, the writer commits the staged chunks as one group (one upsert,
    one flush); it is killed as the group's decisions are made, and the job still
    ends exact.
    """
    client = connect(fault_stack.redis_url)
    store_log = fault_stack.tmp / "data" / "logs" / "store.log"
    assert "stopped" in fault_stack.ctl("stop", "store")
    try:
        job_id, collection = index_folder(fault_stack, "grouped")
        deadline = time.monotonic() + 120
        while client.zcard("visionnet:staged-index") < 4:
            assert time.monotonic() < deadline, "chunks were never staged"
            time.sleep(0.05)
        # Backpressure: the model worker waits instead of staging a fifth chunk.
        seen = set()
        until = time.monotonic() + 3
        while time.monotonic() < until:
            seen.add(client.zcard("visionnet:staged-index"))
            time.sleep(0.05)
        assert seen == {4}, seen
        assert progress(fault_stack, job_id)["progress"]["done"] == 0
        log_seen = store_log.stat().st_size
    finally:
        assert "started" in fault_stack.ctl("start", "store")
    wait_for_key(fault_stack, f"visionnet:job:{job_id}:decision:3")
    victim = fault_stack.pool_child("store")
    victim.send_signal(signal.SIGKILL)
    victim.wait(10)
    job = wait_job(fault_stack.base, job_id, timeout=300)
    assert_exact(fault_stack, job, collection)
    assert client.zcard("visionnet:staged-index") == 0
    assert not list(client.scan_iter("visionnet:staged:*"))  # nothing left behind
    with store_log.open() as f:
        f.seek(log_seen)
        groups = [int(n) for n in re.findall(r"committed (\d+) chunk", f.read())]
    # The first group took the four staged chunks; if the kill cut it short, the
    # redelivered chunk went alone and the other three went on together.
    assert max(groups) >= 3, groups


class PoisonKiller(threading.Thread):
    """SIGKILLs the model worker's pool process each time a chunk holding ``poison`` starts.

    What a file that crashes its decoder in C does, done from outside: the test
    watches the messages the worker holds (kombu's ``unacked`` hash) and each
    chunk task's start counter (``visionnet:delivery:<task id>:<retry>``, which
    the task bumps as it starts), and kills the pool process on every start of
    a chunk with the poison file, up to the delivery cap (3): past it the task
    gives up instead of running.
    """

    def __init__(self, stack: FaultStack, poison: str) -> None:
        super().__init__(daemon=True)
        self.stack, self.poison = stack, poison
        self.client = connect(stack.redis_url)
        self.killed: dict[str, int] = {}  # task id -> the last start killed
        self.chunks: set[int] = set()  # chunk numbers that held the poison file
        self.done = threading.Event()

    def run(self) -> None:
        while not self.done.wait(0.005):
            for raw in self.client.hvals("unacked"):
                payload = json.loads(raw)[0]
                headers = payload["headers"]
                if headers.get("task") != "visionnet.index.embed_chunk":
                    continue
                _args, kwargs, _embed = json.loads(base64.b64decode(payload["body"]))
                if self.poison not in kwargs["paths"]:
                    continue
                task_id = headers["id"]
                started = int(
                    self.client.get(f"visionnet:delivery:{task_id}:{headers.get('retries') or 0}")
                    or 0
                )
                if self.killed.get(task_id, 0) < started <= 3:
                    self.killed[task_id] = started
                    self.chunks.add(kwargs["chunk_no"])
                    try:
                        self.stack.pool_child("models").send_signal(signal.SIGKILL)
                    except (AssertionError, psutil.Error):  # between pool processes
                        self.killed[task_id] = started - 1


def test_a_chunk_that_kills_its_worker_every_time_is_split_until_the_file_stands_alone(
    fault_stack: FaultStack,
) -> None:
    """A poison file among 7 good ones (one chunk): its process dies on every run.

    The chunk is split in halves at the delivery cap (3 runs), and the half that
    still kills its process again, down to the poison file alone: only it fails.
    """
    folder = fault_stack.root / "poison"
    write_images(folder, range(6000, 6008), fmt="JPEG")
    poison = str(folder / "img_6003.jpg")
    killer = PoisonKiller(fault_stack, poison)
    killer.start()
    try:
        body = {"source": {"path": str(folder)}, "collection": "poison"}
        job = wait_job(fault_stack.base, submit(fault_stack.base, "index", json=body), timeout=600)
    finally:
        killer.done.set()
        killer.join()
    assert job["state"] == "succeeded", job
    result = job["result"]
    assert (result["total"], result["indexed"], result["failed"]) == (8, 7, 1)
    assert [e["path"] for e in result["errors"]] == [poison]
    assert "died each of the 3 times" in result["errors"][0]["error"]
    assert counts(job) == {"total": 8, "done": 8, "failed": 1}
    assert fault_stack.count("poison") == 7
    # The chunk of 8, then halves of 4, 2 and 1 held the poison file, each killed 3 times.
    assert len(killer.chunks) == 4 and set(killer.killed.values()) == {3}, killer.killed


def test_a_store_writer_that_lost_its_lock_writes_nothing_until_it_has_it_back(
    fault_stack: FaultStack,
) -> None:
    """A second writer takes the lock (as after a stall longer than its TTL): the
    store writer pauses, no row is written and the job waits; the lock handed
    back, the job ends exact."""
    client = connect(fault_stack.redis_url)
    store_log = fault_stack.tmp / "data" / "logs" / "store.log"
    seen = store_log.stat().st_size
    client.delete(LOCK_KEY)
    thief = hold_writer_lock(client, wait_s=5, ttl_s=6)
    try:
        job_id, collection = index_folder(fault_stack, "fenced")
        deadline = time.monotonic() + 120
        while True:
            with store_log.open() as f:
                f.seek(seen)
                if "writes paused" in f.read():
                    break
            assert time.monotonic() < deadline, "the store writer never paused"
            time.sleep(0.1)
        # Chunks are embedded and staged, and wait: nothing written, nothing counted.
        while client.zcard("visionnet:staged-index") < 4:
            assert time.monotonic() < deadline, "chunks were never staged"
            time.sleep(0.1)
        job = progress(fault_stack, job_id)
        assert job["state"] == "running" and job["progress"]["done"] == 0, job
        assert not with_milvus(fault_stack.milvus_uri, lambda c: c.has_collection(collection))
    finally:
        thief.release()
    job = wait_job(fault_stack.base, job_id, timeout=300)
    assert_exact(fault_stack, job, collection)
    with store_log.open() as f:
        f.seek(seen)
        assert "writes resume" in f.read()


def test_ctrl_c_mid_job_stops_in_order_and_up_finishes_the_job(fault_stack: FaultStack) -> None:
    job_id, collection = index_folder(fault_stack, "ctrl_c")
    assert wait_until_done_at_least(fault_stack, job_id, 16)["state"] == "running"
    assert fault_stack.proc is not None
    models_log = fault_stack.tmp / "data" / "logs" / "models.log"
    seen = models_log.stat().st_size
    assert stop(fault_stack.proc) == 0  # SIGINT, as Ctrl-C sends it
    fault_stack.proc = None
    log = (fault_stack.tmp / "data" / "logs" / "supervisord.log").read_text()
    last_stop = log[log.rindex("received SIGINT") :]
    order = [
        line.split("stopped: ")[1].split()[0]
        for line in last_stop.splitlines()
        if "stopped: " in line
    ]
    # web and Flower, then the workers (warm: the task at hand finishes), then Milvus, Redis.
    expected = ["web", "flower", "interactive", "models", "store", "milvus", "redis"]
    assert order[:7] == expected, order
    assert "SIGKILL" not in last_stop, last_stop
    with models_log.open() as f:
        f.seek(seen)
        during_stop = f.read()
    assert "Warm shutdown" in during_stop, during_stop
    assert "WorkerLostError" not in during_stop and "Couldn't ack" not in during_stop, during_stop
    assert progress_after_restart(fault_stack, job_id)["state"] in {"running", "succeeded"}
    job = wait_job(fault_stack.base, job_id, timeout=300)
    assert_exact(fault_stack, job, collection)


def progress_after_restart(stack: FaultStack, job_id: str) -> dict[str, Any]:
    stack.up()
    return progress(stack, job_id)


@pytest.mark.parametrize("victim", ["milvus", "models pool"])
def test_real_milvus_server_with_direct_writes_survives_a_kill(
    server_fault_stack: FaultStack, victim: str
) -> None:
    """SIGKILL of the real server (its relay; the server dies with it) or of a writing worker."""
    stack = server_fault_stack
    job_id, collection = index_folder(stack, f"server_{victim.split()[0]}")
    assert wait_until_done_at_least(stack, job_id, 16)["state"] == "running"
    if victim == "milvus":
        pid = stack.pid("milvus")
        os.kill(pid, signal.SIGKILL)
        stack.wait_restarted("milvus", pid)
    else:
        child = stack.pool_child("models")
        child.send_signal(signal.SIGKILL)
        child.wait(10)
    job = wait_job(stack.base, job_id, timeout=300, through_outages=True)
    assert_exact(stack, job, collection)
