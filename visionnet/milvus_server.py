"""A real Milvus standalone server for the embedded stack, from the ``milvus`` wheel (2.3.5).

Why not the wheel's own ``milvus-server`` command: it runs the server as a
child it never watches (SIGTERM leaves the server orphaned, SIGINT kills it
after one second, a dead server leaves the wrapper running), it moves a busy
port to the next free one silently, and its embedded etcd always takes
127.0.0.1:2379, so two stacks clash. This module writes the server's config
from the wheel's own template, every port chosen by us (``base`` + offset),
and then becomes the server (``execve``), so the pid supervisord holds is the
server itself.

Why a network namespace: Milvus 2.3.5 binds its eight gRPC servers and its
metrics server on all interfaces, hard-coded (only the ``ip`` it advertises can
be set). Where this process may create a network namespace (root or
CAP_SYS_ADMIN), the server runs in one that has only ``lo``, and this process
relays the client port from the host's ``milvus.embedded_host`` (127.0.0.1 unless
model workers on other hosts must reach it) and the metrics port from 127.0.0.1:
nothing else is reachable from outside. Elsewhere it refuses to start unless
``milvus.server_isolation = "none"`` says to accept the open ports.

Why a root password: a server that other hosts reach must not take anonymous
clients. With ``milvus.token`` (``root:<password>``) the server runs with
authorization on, and before the relay lets any client in, root's password
(Milvus' default is "Milvus") is changed to the token's (``set_root_password``).
"""

from __future__ import annotations

import asyncio
import ctypes
import fcntl
import os
import re
import signal
import socket
import struct
import subprocess
import sys
import threading
from pathlib import Path

PORT_OFFSETS = {
    "proxy_port": 0,  # the client port (gRPC and REST)
    "metrics_port": 1,  # /metrics and /healthz
    "proxy_internal_port": 2,
    "root_coord_port": 3,
    "query_coord_port": 4,
    "query_node_port": 5,
    "data_coord_port": 6,
    "data_node_port": 7,
    "index_node_port": 8,
    "etcd_port": 9,
    "etcd_peer_port": 10,
}
# Settings over the template's defaults, "section.key": value.
OVERRIDES = {
    # SIGTERM with a loaded collection otherwise waits for another query node to
    # take its segments (there is none): more than 11 minutes was seen.
    "queryNode.gracefulStopTimeout": "5",
    "common.gracefulStopTimeout": "30",
    # Strong reads wait for the next time tick: 200 ms by default, 20 ms here.
    "proxy.timeTickInterval": "20",
}
# "section.key.subkey" names a key at any depth; write_config's own overrides
# (milvus.server_segment_max_mb: "dataCoord.segment.maxSize") go over these.
CLONE_NEWNET = 0x40000000


class IsolationError(RuntimeError):
    """The server's ports cannot be kept off the network here."""


class PortTakenError(RuntimeError):
    """One of the server's host ports is held by another process."""


def bind_exposed(
    base: int, names: list[str], hosts: dict[str, str] | None = None
) -> list[tuple[socket.socket, int]]:
    """Listen at the server's ``names`` ports, for the relay: on 127.0.0.1, or the
    address ``hosts`` gives a name.

    A port in use is named with its role and where it comes from, so a user
    whose ``milvus.embedded_port + 1`` is taken does not have to guess.
    """
    listeners: list[tuple[socket.socket, int]] = []
    for name in names:
        port = ports(base)[name]
        host = (hosts or {}).get(name, "127.0.0.1")
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        sock = socket.socket(family, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError as exc:
            sock.close()
            for held, _ in listeners:
                held.close()
            raise PortTakenError(
                f"the Milvus server cannot listen on {host}:{port}, its {name} "
                f"(milvus.embedded_port {base} + {PORT_OFFSETS[name]}): {exc.strerror}. "
                f"Another process holds it; the server needs ports {base}-"
                f"{base + max(PORT_OFFSETS.values())}: choose another milvus.embedded_port."
            ) from exc
        sock.listen(512)
        sock.setblocking(False)
        listeners.append((sock, port))
    return listeners


def ports(base: int) -> dict[str, int]:
    return {name: base + offset for name, offset in PORT_OFFSETS.items()}


def write_config(data: Path, base: int, overrides: dict[str, str] | None = None) -> Path:
    """``<data>/configs/milvus.yaml`` and the embedded etcd's file; returns the configs dir.

    ``overrides`` ("section.key": value) go over the template and ``OVERRIDES``.
    """
    import milvus  # the wheel: its template and packed binaries

    pkg = Path(milvus.__file__).parent
    configs, logs, storage = data / "configs", data / "logs", data / "storage"
    for d in (configs, logs, storage):
        d.mkdir(parents=True, exist_ok=True)
    values: dict[str, object] = dict(ports(base))
    values.update(
        index_coord_port=ports(base)["index_node_port"],
        etcd_log_level="info",
        etcd_log_path=logs / "etcd.log",
        etcd_data_dir=storage / "etcd.data",
        local_storage_dir=storage,
        rocksmq_data_dir=storage / "rocksmq",
        system_log_path=logs,
        server_pem_path="server.pem",
        server_key_path="server.key",
        ca_pem_path="ca.pem",
        authorization_enabled="false",
        tls_mode=0,
    )
    text = (pkg / "data" / "config.yaml.template").read_text(encoding="utf-8")
    text = re.sub(
        r"\{\{(.*?)\}\}", lambda m: str(values[re.split(r"[:(]", m.group(1).strip())[0]]), text
    )
    text = text.replace("endpoints: localhost:", "endpoints: 127.0.0.1:")
    text = re.sub(r"(?m)^  ip:.*$", "  ip: 127.0.0.1", text)  # what components advertise
    etcd_file = configs / "embedEtcd.yaml"
    text = text.replace("\netcd:\n", f"\netcd:\n  config:\n    path: {etcd_file}\n", 1)
    for key, value in (OVERRIDES | (overrides or {})).items():
        text = _set(text, key, value)
    (configs / "milvus.yaml").write_text(text, encoding="utf-8")
    (configs / "glog.conf").write_bytes((pkg / "data" / "glog.conf").read_bytes())
    client = f"http://127.0.0.1:{ports(base)['etcd_port']}"
    peer = f"http://127.0.0.1:{ports(base)['etcd_peer_port']}"
    etcd_file.write_text(
        "name: default\n"
        f"listen-client-urls: {client}\nadvertise-client-urls: {client}\n"
        f"listen-peer-urls: {peer}\ninitial-advertise-peer-urls: {peer}\n"
        f"initial-cluster: default={peer}\ninitial-cluster-state: new\n"
        'auto-compaction-mode: revision\nauto-compaction-retention: "1000"\n'
        f"log-outputs: [{logs / 'etcd.log'}]\n",
        encoding="utf-8",
    )
    return configs


def _set(text: str, dotted: str, value: str) -> str:
    """Set ``a.b.c`` of a YAML text indented by two spaces per level (the template's shape).

    Missing levels are added; the key's old line (and its comment) is replaced.
    """
    keys = dotted.split(".")
    start, end, indent = 0, len(text), 0
    for depth, key in enumerate(keys):
        pad = " " * indent
        found = re.compile(rf"(?m)^{pad}{re.escape(key)}:.*$").search(text, start, end)
        if found is None:
            rest = keys[depth:]
            lines = "".join(f"{' ' * (indent + 2 * i)}{k}:\n" for i, k in enumerate(rest[:-1]))
            lines += f"{' ' * (indent + 2 * (len(rest) - 1))}{rest[-1]}: {value}\n"
            if depth == 0:
                return text.rstrip("\n") + "\n\n" + lines
            return text[:start] + lines + text[start:]
        if depth == len(keys) - 1:
            return text[: found.start()] + f"{pad}{key}: {value}" + text[found.end() :]
        start = found.end() + 1
        below = re.compile(rf"(?m)^ {{0,{indent}}}[^\s#]").search(text, start, end)
        end = below.start() if below else end
        indent += 2
    raise AssertionError("unreachable")


def unpack_binaries(bin_base: Path) -> Path:
    """The server binaries, unpacked from the wheel once (246 MB; checked by md5)."""
    import milvus

    bin_base.mkdir(parents=True, exist_ok=True)
    milvus._initialize_data_files(str(bin_base))  # idempotent
    return bin_base / "bin"


def run(
    data: Path,
    base: int,
    bin_base: Path,
    *,
    isolate: bool,
    overrides: dict[str, str] | None = None,
    host: str = "127.0.0.1",
    root_password: str = "",
) -> None:
    """Become the Milvus server (never returns).

    ``root_password``: authorization on, root's password set to it before any
    client gets in (isolated), or as soon as the server answers (not isolated).
    """
    overrides = dict(overrides or {})
    if root_password:
        overrides["common.security.authorizationEnabled"] = "true"
    configs = write_config(data, base, overrides)
    bin_dir = unpack_binaries(bin_base)
    exe = str(bin_dir / "milvus")
    env = dict(os.environ)
    env.update(
        DEPLOY_MODE="STANDALONE",
        METRICS_PORT=str(ports(base)["metrics_port"]),
        MILVUSCONF=str(configs),
        LD_LIBRARY_PATH=f"{bin_dir}:{os.environ.get('LD_LIBRARY_PATH', '')}",
    )
    os.chdir(data)  # glog writes under ./logs
    argv = [exe, "run", "standalone", "-alias", f"visionnet-{base}"]
    sys.stdout.flush()
    if isolate:
        # Bound on the host before leaving its network.
        listeners = bind_exposed(base, ["proxy_port", "metrics_port"], {"proxy_port": host})
        _run_isolated(exe, argv, env, listeners, root_password)
    if root_password:
        # No relay to hold clients back: a child sets the password once the server answers.
        _password_setter(ports(base)["proxy_port"], root_password)
    os.execve(exe, argv, env)


def _password_setter(port: int, password: str) -> subprocess.Popen[bytes]:
    """A process that sets root's password (``set_root_password``) on the server at ``port``.

    Its own process, so that the relay never imports pymilvus and gRPC; the
    password travels in its environment, not on a command line.
    """
    code = (
        "import os, sys; from visionnet.milvus_server import set_root_password; "
        "set_root_password(int(sys.argv[1]), os.environ.pop('MILVUS_ROOT_PASSWORD'))"
    )
    env = dict(os.environ, MILVUS_ROOT_PASSWORD=password)
    return subprocess.Popen([sys.executable, "-c", code, str(port)], env=env)


def set_root_password(port: int, password: str, wait_s: float = 300.0) -> None:
    """Wait for the server on 127.0.0.1:``port``; make root's password ``password``.

    Kept if it already is (a restart); changed from Milvus' default otherwise.
    Neither accepted: root's password is something else (an earlier token), which
    only its owner can change: say so and fail, rather than serve on.
    """
    import time

    from pymilvus import MilvusClient, MilvusException

    uri = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + wait_s
    answered = False
    while time.monotonic() < deadline:
        for token in (f"root:{password}", "root:Milvus"):
            try:
                client = MilvusClient(uri=uri, token=token, timeout=5)
            except MilvusException as exc:
                answered = answered or "illegal connection" in str(exc.message)
                continue
            try:
                if token != f"root:{password}":
                    client.update_password("root", "Milvus", password)
                    print("VisionNet: the Milvus server's root password is set from milvus.token")
                return
            finally:
                client.close()
        time.sleep(1)
    why = (
        "it refuses both milvus.token and Milvus' default password: root's password was "
        "set to something else (an earlier token); set milvus.token to it"
        if answered
        else f"it did not answer within {wait_s:.0f}s"
    )
    raise RuntimeError(f"cannot set the Milvus server's root password: {why}")


def _run_isolated(
    exe: str,
    argv: list[str],
    env: dict[str, str],
    listeners: list[tuple[socket.socket, int]],
    root_password: str = "",
) -> None:
    """Run the server in a network namespace of its own; relay ``listeners`` from 127.0.0.1."""
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.unshare(CLONE_NEWNET) != 0:
        raise IsolationError(
            "cannot create a network namespace (needs root or CAP_SYS_ADMIN): Milvus 2.3.5 "
            "would listen on all interfaces. Run as root, use Milvus Lite "
            '(milvus.engine = "lite"), or accept the open ports with '
            'milvus.server_isolation = "none".'
        )
    _loopback_up()
    pid = os.fork()
    if pid == 0:
        for sock, _ in listeners:
            sock.close()
        libc.prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG: the server dies with its relay
        os.execve(exe, argv, env)
    for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
        signal.signal(sig, lambda n, _f: os.kill(pid, n))
    if root_password:
        # Clients wait in the listeners' backlog until root's password is set.
        port = listeners[0][1]
        if _password_setter(port, root_password).wait() != 0:
            os.kill(pid, signal.SIGTERM)
            os.waitpid(pid, 0)
            os._exit(1)
    status = asyncio.run(_relay(pid, listeners))
    os._exit(os.WEXITSTATUS(status) if os.WIFEXITED(status) else 128 + os.WTERMSIG(status))


def _loopback_up() -> None:
    """``ip link set lo up`` inside the new namespace."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as d:
        request = struct.pack("16sH22x", b"lo", 0)
        flags = struct.unpack("16sH22x", fcntl.ioctl(d, 0x8913, request))[1]  # SIOCGIFFLAGS
        fcntl.ioctl(d, 0x8914, struct.pack("16sH22x", b"lo", flags | 1))  # SIOCSIFFLAGS, IFF_UP


async def _relay(pid: int, listeners: list[tuple[socket.socket, int]]) -> int:
    """Forward each host connection to the same port inside; return the server's wait status."""

    async def pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while data := await reader.read(262144):
                writer.write(data)
                await writer.drain()
        except (ConnectionError, OSError):
            pass
        finally:
            writer.close()

    def handler(port: int):  # type: ignore[no-untyped-def]
        async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            try:
                inner_r, inner_w = await asyncio.open_connection("127.0.0.1", port)
            except OSError:
                writer.close()
                return
            await asyncio.gather(pipe(reader, inner_w), pipe(inner_r, writer))

        return handle

    loop = asyncio.get_running_loop()
    done: asyncio.Future[int] = loop.create_future()

    def wait() -> None:
        status = os.waitpid(pid, 0)[1]
        loop.call_soon_threadsafe(done.set_result, status)

    threading.Thread(target=wait, daemon=True).start()
    for sock, port in listeners:
        await asyncio.start_server(handler(port), sock=sock)
    return await done
