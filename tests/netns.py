"""Two hosts on one machine: network namespaces, each running a part of the stack.

Shared by tests/test_two_hosts.py and bench/two_hosts.py. Two namespaces joined by a
veth pair, with private addresses that exist only inside them (10.231.7.1 and .2),
and ``visionnet up --roles ...`` run in each under a host name of its own (a UTS
namespace). Needs root, ``ip`` (iproute2) and ``unshare``.
"""

from __future__ import annotations

import ctypes
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import requests

VISIONNET = str(Path(sys.executable).with_name("visionnet"))
ADDR_A, ADDR_B = "10.231.7.1", "10.231.7.2"
REDIS_PORT, MILVUS_PORT, WEB_PORT = 6379, 19530, 8000
REDIS_PASSWORD = "two hosts: p@ss/w0rd"  # needs quoting in a URL
MILVUS_TOKEN = "root:two-hosts-milvus"
CLONE_NEWNET = 0x40000000
T = TypeVar("T")


class InNetns:
    """Calls run in a thread that entered a network namespace (the rest of us stay out)."""

    def __init__(self, name: str) -> None:
        self._pool = ThreadPoolExecutor(1, initializer=self._enter, initargs=(name,))

    @staticmethod
    def _enter(name: str) -> None:
        libc = ctypes.CDLL(None, use_errno=True)
        fd = os.open(f"/var/run/netns/{name}", os.O_RDONLY)
        try:
            if libc.setns(fd, CLONE_NEWNET) != 0:
                raise OSError(ctypes.get_errno(), f"setns into {name}")
        finally:
            os.close(fd)

    def __call__(self, fn: Callable[..., T], *args: Any, **kw: Any) -> T:
        return self._pool.submit(fn, *args, **kw).result()

    def close(self) -> None:
        self._pool.shutdown()


@dataclass
class TwoHosts:
    ns_a: str
    ns_b: str
    root: Path
    a: subprocess.Popen[bytes]
    b: subprocess.Popen[bytes]
    in_a: InNetns
    in_b: InNetns
    logs: dict[str, Path]

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{WEB_PORT}/api/v1"

    def get(self, path: str) -> requests.Response:
        return self.in_a(requests.get, self.base + path, timeout=10)

    def health(self) -> dict[str, Any]:
        body: dict[str, Any] = self.get("/health").json()
        return body


def ip(*args: str) -> None:
    subprocess.run(["ip", *args], check=True, capture_output=True, text=True, timeout=30)


def make_namespaces(ns_a: str, ns_b: str, veth: str) -> None:
    for ns in (ns_a, ns_b):
        ip("netns", "add", ns)
        ip("-n", ns, "link", "set", "lo", "up")
    ip("link", "add", f"{veth}a", "type", "veth", "peer", "name", f"{veth}b")
    for ns, end, addr in ((ns_a, "a", ADDR_A), (ns_b, "b", ADDR_B)):
        ip("link", "set", f"{veth}{end}", "netns", ns)
        ip("-n", ns, "addr", "add", f"{addr}/30", "dev", f"{veth}{end}")
        ip("-n", ns, "link", "set", f"{veth}{end}", "up")


def up_in(ns: str, host: str, env: dict[str, str], roles: str, log: Path) -> Any:
    """``visionnet up --roles ROLES`` inside namespace ``ns``, under host name ``host``.

    ``ip netns exec``, ``unshare`` and the shell all exec: the pid is supervisord's.
    """
    script = f'hostname {host} && exec "$0" up --roles {roles}'
    return subprocess.Popen(
        ["ip", "netns", "exec", ns, "unshare", "--uts", "sh", "-c", script, VISIONNET],
        env=env,
        stdout=log.open("ab"),
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )


def wait_for_workers(hosts: TwoHosts, names: set[str], timeout: float = 240) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    last: Any = None
    while time.monotonic() < deadline:
        for proc in (hosts.a, hosts.b):
            if proc.poll() is not None:
                raise AssertionError(f"a host's stack exited: {tails(hosts)}")
        try:
            last = hosts.health()
            if names <= {w["name"] for w in last["workers"]}:
                return dict(last)
        except requests.RequestException as exc:
            last = exc
        time.sleep(0.5)
    raise AssertionError(f"workers {names} not in health after {timeout}s: {last}\n{tails(hosts)}")


def tails(hosts: TwoHosts) -> str:
    return "\n".join(f"--- {k}\n{v.read_text()[-3000:]}" for k, v in hosts.logs.items())


def stop(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is None:
        proc.send_signal(signal.SIGINT)
        try:
            proc.wait(timeout=180)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()


def delete_namespaces(*names: str) -> None:
    """Deleting B's namespace takes the veth pair, and A's address, with it."""
    for ns in names:
        subprocess.run(["ip", "netns", "delete", ns], capture_output=True)
