"""Two hosts, tested: a main host and a model host made from network namespaces.

The test makes two namespaces joined by a veth pair, with private addresses
that exist only inside them (10.231.7.1 and .2), and a host name of its own for
each (a UTS namespace), as two machines would have. Host A runs
``visionnet up --roles redis,milvus,web,store,flower,models``: its Redis on
TCP at A's address with a password, the real Milvus server on A's address with
a token, the web, the store writer and a model worker. Host B runs
``visionnet up --roles models`` only, reaching A by its address. An index job's
chunks are embedded on both; B is killed with SIGKILL mid-job (supervisord and
the worker's processes, as a host losing power), and A finishes the job with
exact counts. A's listeners are only on loopback and A's address.

The test process stays in the root namespace, which has no route to either:
its HTTP to A's web runs in a thread that entered A's namespace (``setns``
affects only the calling thread). The namespace and stack helpers are in
tests/netns.py, shared with bench/two_hosts.py.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from typing import Any
from urllib.parse import quote

import psutil
import pytest
import requests

from tests.conftest import stack_env
from tests.helpers import FINAL, write_images
from tests.netns import (
    ADDR_A,
    MILVUS_PORT,
    MILVUS_TOKEN,
    REDIS_PASSWORD,
    REDIS_PORT,
    WEB_PORT,
    InNetns,
    TwoHosts,
    delete_namespaces,
    make_namespaces,
    stop,
    up_in,
    wait_for_workers,
)
from tests.tiny_model import build_tiny_model

pytestmark = pytest.mark.timeout(600)

FILES = 256  # 16 chunks: enough that a host slowed by a busy machine still gets some
CHUNK = 16


@pytest.fixture(scope="module")
def two_hosts(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TwoHosts]:
    if shutil.which("ip") is None or shutil.which("unshare") is None:
        pytest.skip("TWO-HOST TEST SKIPPED: no `ip` (iproute2) or `unshare` on this machine")
    tag = f"{os.getpid() % 100000}"
    ns_a, ns_b, veth = f"vn24a-{tag}", f"vn24b-{tag}", f"vn{tag}"
    try:
        make_namespaces(ns_a, ns_b, veth)
    except (subprocess.CalledProcessError, OSError) as exc:
        delete_namespaces(ns_a, ns_b)
        err = getattr(exc, "stderr", "") or exc
        pytest.skip(f"TWO-HOST TEST SKIPPED: cannot make network namespaces (needs root): {err}")
    tmp = tmp_path_factory.mktemp("two-hosts")
    root = tmp / "root"
    write_images(root, range(FILES))
    # The slow model (as in test_faults): a chunk takes long enough for both hosts to get
    # some and for the kill to land mid-job.
    model = build_tiny_model(tmp / "slow-model", hidden_sizes=(64, 128), image_size=512)
    common = {
        "VISIONNET_JOBS__REDELIVERY_TIMEOUT_S": "15",
        "VISIONNET_JOBS__STALL_TIMEOUT_S": "240",
        "VISIONNET_MILVUS__TOKEN": MILVUS_TOKEN,
        "VISIONNET_WEB__PORT": str(WEB_PORT),  # each namespace has ports of its own
        "VISIONNET_FLOWER__PORT": "5555",
        "VISIONNET_MILVUS__EMBEDDED_PORT": str(MILVUS_PORT),
        "VISIONNET_JOBS__CHUNK_SIZE": str(CHUNK),
    }
    env_a = stack_env(
        tmp / "a",
        model,
        root,
        **common,
        VISIONNET_WEB__WORKERS="1",
        VISIONNET_STACK__REDIS_BIND=ADDR_A,
        VISIONNET_STACK__REDIS_PORT=str(REDIS_PORT),
        VISIONNET_STACK__REDIS_PASSWORD=REDIS_PASSWORD,
        VISIONNET_MILVUS__ENGINE="server",
        VISIONNET_MILVUS__EMBEDDED_HOST=ADDR_A,
    )
    env_b = stack_env(
        tmp / "b",
        model,
        root,
        **common,
        VISIONNET_REDIS_URL=f"redis://:{quote(REDIS_PASSWORD, safe='')}@{ADDR_A}:{REDIS_PORT}/0",
        VISIONNET_MILVUS__URI=f"http://{ADDR_A}:{MILVUS_PORT}",
    )
    logs = {"a": tmp / "a.log", "b": tmp / "b.log"}
    a = up_in(ns_a, "vn-host-a", env_a, "redis,milvus,web,store,flower,models", logs["a"])
    b = up_in(ns_b, "vn-host-b", env_b, "models", logs["b"])
    hosts = TwoHosts(ns_a, ns_b, root, a, b, InNetns(ns_a), InNetns(ns_b), logs)
    try:
        wait_for_workers(hosts, {"store@vn-host-a", "models@vn-host-a", "models@vn-host-b"})
        yield hosts
    finally:
        for proc in (b, a):
            stop(proc)
        hosts.in_a.close()
        hosts.in_b.close()
        delete_namespaces(ns_a, ns_b)


def test_health_names_the_host_of_each_queue(two_hosts: TwoHosts) -> None:
    health = two_hosts.health()
    hosts = {w["name"]: w["host"] for w in health["workers"]}
    assert hosts == {
        "store@vn-host-a": "vn-host-a",
        "models@vn-host-a": "vn-host-a",
        "models@vn-host-b": "vn-host-b",
    }
    queues = {q["queue"]: q["workers"] for q in health["queues"]}
    assert queues["bulk"] == ["models@vn-host-a", "models@vn-host-b"]
    assert queues["store"] == ["store@vn-host-a"]


def _listeners(ns: str) -> list[str]:
    out = subprocess.run(
        ["ip", "netns", "exec", ns, "ss", "-ltnH"], capture_output=True, text=True, check=True
    ).stdout
    return [line.split()[3] for line in out.splitlines() if line.strip()]


def test_a_listens_only_on_loopback_and_its_address(two_hosts: TwoHosts) -> None:
    listening = _listeners(two_hosts.ns_a)
    addresses = {addr.rsplit(":", 1)[0] for addr in listening}
    assert addresses <= {"127.0.0.1", "[::1]", ADDR_A}, listening
    assert f"{ADDR_A}:{REDIS_PORT}" in listening
    assert f"{ADDR_A}:{MILVUS_PORT}" in listening
    assert f"127.0.0.1:{WEB_PORT}" in listening


def _redis_ping(password: str | None) -> bytes:
    with socket.create_connection((ADDR_A, REDIS_PORT), timeout=5) as s:
        if password is not None:
            s.sendall(f"AUTH {json.dumps(password)}\r\n".encode())
            assert s.recv(100).startswith(b"+OK")
        s.sendall(b"PING\r\n")
        return s.recv(100)


def test_b_reaches_redis_on_a_only_with_the_password(two_hosts: TwoHosts) -> None:
    assert two_hosts.in_b(_redis_ping, None).startswith(b"-NOAUTH")
    assert two_hosts.in_b(_redis_ping, REDIS_PASSWORD) == b"+PONG\r\n"


# Run in B's namespace by a fresh interpreter (gRPC's threads would not be in ours).
MILVUS_CHECK = """
import json, sys
from pymilvus import MilvusClient, MilvusException
uri, token, collection = sys.argv[1:4]
try:
    MilvusClient(uri=uri, timeout=10).list_collections()
    anonymous = "accepted"
except MilvusException as exc:
    anonymous = "refused"
client = MilvusClient(uri=uri, token=token, timeout=30)
client.load_collection(collection)
rows = client.query(collection, filter="", output_fields=["path"], limit=16384)
print(json.dumps({"anonymous": anonymous, "paths": [r["path"] for r in rows]}))
"""


def _milvus_from_b(hosts: TwoHosts, collection: str) -> dict[str, Any]:
    out = subprocess.run(
        ["ip", "netns", "exec", hosts.ns_b, sys.executable, "-c", MILVUS_CHECK,
         f"http://{ADDR_A}:{MILVUS_PORT}", MILVUS_TOKEN, collection],
        capture_output=True, text=True, timeout=180,
    )  # fmt: skip
    assert out.returncode == 0, out.stderr[-3000:]
    result: dict[str, Any] = json.loads(out.stdout.strip().splitlines()[-1])
    return result


def _job(hosts: TwoHosts, job_id: str) -> dict[str, Any]:
    r = hosts.get(f"/jobs/{job_id}")
    assert r.status_code == 200, r.text
    body: dict[str, Any] = r.json()
    return body


def _kill_host_b(hosts: TwoHosts) -> list[int]:
    """SIGKILL B's supervisord, then every process under it (the worker and its pool):
    a host gone at once, with nobody left there to restart anything."""
    top = psutil.Process(hosts.b.pid)
    below = top.children(recursive=True)
    assert any("worker models" in " ".join(p.cmdline()) for p in below)
    for p in [top, *below]:
        p.send_signal(signal.SIGKILL)
    hosts.b.wait(30)
    psutil.wait_procs(below, timeout=30)
    return [p.pid for p in below]


def test_an_index_job_spans_both_hosts_and_survives_b_killed(two_hosts: TwoHosts) -> None:
    started = time.monotonic()
    collection = "two_hosts"
    body = {"source": {"path": str(two_hosts.root)}, "collection": collection}
    r = two_hosts.in_a(requests.post, two_hosts.base + "/index", json=body, timeout=30)
    assert r.status_code == 202, r.text
    job_id = r.json()["job_id"]
    # Both hosts have embedded a chunk, and the job is still running: kill B then.
    deadline = time.monotonic() + 300
    while True:
        job = _job(two_hosts, job_id)
        workers = job["progress"].get("workers", {})
        if workers.get("models@vn-host-a") and workers.get("models@vn-host-b"):
            break
        assert job["state"] not in FINAL, f"job ended before both hosts took part: {job}"
        assert time.monotonic() < deadline, job
        time.sleep(0.2)
    assert job["state"] == "running", job
    b_before = workers["models@vn-host-b"]
    mid = time.monotonic()
    _kill_host_b(two_hosts)
    # A finishes the job: B's chunk in flight comes back after the redelivery timeout.
    while job["state"] not in FINAL:
        assert time.monotonic() < deadline + 300, job
        time.sleep(0.5)
        job = _job(two_hosts, job_id)
    finished = time.monotonic()
    assert job["state"] == "succeeded", job
    result = job["result"]
    assert (result["total"], result["indexed"], result["failed"]) == (FILES, FILES, 0), result
    workers = result["workers"]
    assert set(workers) == {"models@vn-host-a", "models@vn-host-b"}, workers
    assert workers["models@vn-host-b"] == b_before  # nothing from B after its death
    assert sum(workers.values()) >= -(-FILES // CHUNK)
    # One row per file in Milvus, read from B's namespace: with the token, never without.
    stored = _milvus_from_b(two_hosts, collection)
    assert stored["anonymous"] == "refused"
    paths = stored["paths"]
    assert len(paths) == len(set(paths)) == FILES
    assert set(paths) == {str(p) for p in sorted(two_hosts.root.iterdir())}
    # B is gone from health once its record expires (stack.liveness_ttl_s).
    deadline = time.monotonic() + 60
    while "models@vn-host-b" in {w["name"] for w in two_hosts.health()["workers"]}:
        assert time.monotonic() < deadline
        time.sleep(0.5)
    print(
        f"\ntwo hosts: chunks per worker {workers} (chunk size {CHUNK}); "
        f"both hosts until the kill {mid - started:.1f}s, then A alone "
        f"{finished - mid:.1f}s (incl. the redelivery timeout of 15s)"
    )
