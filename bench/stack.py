"""A private VisionNet stack for a benchmark run, started as users start it (``visionnet up``)."""

from __future__ import annotations

import contextlib
import os
import random
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import psutil
import requests

from visionnet.milvus_server import PORT_OFFSETS


def _ephemeral_low() -> int:
    try:
        return int(Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return 32768  # Linux's default


def _bindable(port: int) -> bool:
    with socket.socket() as s:
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def free_port(count: int = 1) -> int:
    """The first of ``count`` consecutive free ports, below the kernel's ephemeral range.

    A port the kernel hands out (bind to port 0) is an ephemeral one: any outgoing
    connection in the test session may take it, or the next one, as its source
    port before the stack binds it. That once kept the real Milvus server's
    metrics port (its base port + 1) taken for a whole CI run. Ports below the
    range are never handed out, so only a listener can hold them.
    """
    top = _ephemeral_low() - count
    for _ in range(500):
        base = random.randrange(10_000, top)
        if all(_bindable(base + i) for i in range(count)):
            return base
    raise RuntimeError(f"no {count} consecutive free ports below {top + count}")


@contextmanager
def private_stack(
    workdir: Path,
    roots: list[Path],
    model_dir: Path | None = None,
    timeout: float = 300.0,
    extra_env: dict[str, str] | None = None,
    flower: bool = False,
) -> Iterator[str]:
    """Yield the base URL of a stack on the demo profile, or on ``model_dir`` when given."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("VISIONNET_")}
    env.update(
        VISIONNET_DATA_DIR=str(workdir / "data"),
        VISIONNET_ALLOWED_ROOTS="[" + ",".join(f'"{r.resolve()}"' for r in roots) + "]",
        VISIONNET_WEB__PORT=str(free_port()),
        # A real Milvus server takes this port and the 10 after it.
        VISIONNET_MILVUS__EMBEDDED_PORT=str(free_port(len(PORT_OFFSETS))),
        VISIONNET_FLOWER__PORT=str(free_port()),
        PYTHONUNBUFFERED="1",
    )
    if model_dir is not None:
        env.update(
            VISIONNET_PROFILE="default",
            VISIONNET_MODELS__CLASSIFIER=str(model_dir.resolve()),
            VISIONNET_MODELS__EMBEDDER=str(model_dir.resolve()),
        )
    env.update(extra_env or {})
    workdir.mkdir(parents=True, exist_ok=True)
    log = workdir / "stack.log"
    visionnet = str(Path(sys.executable).with_name("visionnet"))
    proc = subprocess.Popen(
        [visionnet, "up", *([] if flower else ["--no-flower"])],
        env=env,
        stdout=log.open("ab"),  # O_APPEND: supervisord and its children share it
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    base = f"http://127.0.0.1:{env['VISIONNET_WEB__PORT']}"
    failed = False
    try:
        deadline = time.monotonic() + timeout
        while True:
            if proc.poll() is not None:
                raise RuntimeError(f"stack exited; see {log}")
            try:
                if requests.get(base + "/api/v1/health", timeout=5).status_code == 200:
                    break
            except requests.ConnectionError:
                pass
            if time.monotonic() > deadline:
                raise RuntimeError(f"stack not healthy after {timeout:.0f} s; see {log}")
            time.sleep(0.5)
        yield base
    except BaseException:
        failed = True
        raise
    finally:
        stop_group(proc, signal.SIGINT, timeout=180)
        if failed:
            keep_log(log)


def keep_log(log: Path) -> None:
    """A bench's stack lives in its temporary folder, deleted as the error unwinds:
    copy its log out, the only record of what the stack saw."""
    kept = Path(tempfile.gettempdir()) / f"visionnet-failed-stack-{os.getpid()}.log"
    with contextlib.suppress(OSError):
        shutil.copyfile(log, kept)
        print(f"the stack's log is kept at {kept}", file=sys.stderr, flush=True)


REPO = Path(__file__).resolve().parent.parent


def git(*args: str) -> str:
    return subprocess.run(
        ["git", "-C", str(REPO), *args], check=True, capture_output=True, text=True
    ).stdout.strip()


def revision() -> str:
    """This checkout's short commit, "+changes" when tracked files differ from it."""
    dirty = "+changes" if git("status", "--porcelain", "--untracked-files=no") else ""
    return git("rev-parse", "--short", "HEAD") + dirty


@contextmanager
def base_worktree(rev: str, where: Path) -> Iterator[tuple[str, dict[str, str]]]:
    """A git worktree of ``rev`` at ``where``: its short commit, and the environment
    that makes a private stack run its code (first on ``PYTHONPATH``, the same
    virtual environment), for side-by-side runs against an earlier commit."""
    short = git("rev-parse", "--short", rev)
    git("worktree", "add", "--detach", str(where), short)
    try:
        yield short, {"PYTHONPATH": str(where)}
    finally:
        git("worktree", "remove", "--force", str(where))


def stop_group(proc: subprocess.Popen[bytes], signum: int, timeout: float) -> None:
    """Ask a process started in its own session to stop; kill its group if it does not."""
    proc.send_signal(signum)
    try:
        proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)


def stack_root(workdir: Path) -> psutil.Process | None:
    """The supervisord of the stack started in ``workdir`` (its programs are its children)."""
    for proc in psutil.process_iter(["cmdline"]):
        cmd = " ".join(proc.info["cmdline"] or [])
        if "supervisord" in cmd and str(workdir) in cmd:
            return proc
    return None


def wait_until_quiet(
    root: psutil.Process | None, below: float = 0.4, window_s: float = 10.0, limit_s: float = 180
) -> float:
    """Wait until the stack under ``root`` averages under ``below`` of a core over ``window_s``.

    A stack is busy for a while after it answers: its workers load their models
    and run a warm-up pass in the background, and after a large insert a real
    Milvus server keeps sealing segments and building indexes. A timing taken
    then measures that too. (An idle stack on the real server uses about 0.16 of
    a core here: etcd, time ticks, in bursts.) Returns the seconds waited.
    """
    if root is None:
        return 0.0

    def cpu_seconds() -> float:
        total = 0.0
        for proc in [root, *root.children(recursive=True)]:
            with contextlib.suppress(psutil.Error):
                times = proc.cpu_times()
                total += times.user + times.system
        return total

    start = time.monotonic()
    samples = [(start, cpu_seconds())]
    while time.monotonic() - start < limit_s:
        time.sleep(2.0)
        samples.append((time.monotonic(), cpu_seconds()))
        old = [s for s in samples if s[0] <= samples[-1][0] - window_s]
        if old and (samples[-1][1] - old[-1][1]) / (samples[-1][0] - old[-1][0]) < below:
            break
    return time.monotonic() - start
