"""The whole stack for the end-to-end tests, started the way users start it.

``visionnet up`` runs under supervisord with a private Redis, a milvus-lite server
in a temp dir, real Celery workers, Flower and the web server, on a small
ResNet built from a config and loaded by path.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from tests.helpers import free_port, wait_healthy
from tests.tiny_model import build_tiny_model
from tests.webapp import private_redis, web  # noqa: F401  (fixtures: the app alone)
from visionnet.milvus_server import PORT_OFFSETS

VISIONNET = str(Path(sys.executable).with_name("visionnet"))
SUPERVISORCTL = str(Path(sys.executable).with_name("supervisorctl"))


@dataclass
class Stack:
    base: str
    root: Path
    outside: Path
    data: Path
    model_dir: Path
    env: dict[str, str]
    milvus_uri: str
    redis_url: str
    log: Path


def stack_env(tmp: Path, model_dir: Path, root: Path, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("VISIONNET_")}
    env.update(
        VISIONNET_DATA_DIR=str(tmp / "data"),
        VISIONNET_PROFILE="default",
        VISIONNET_MODELS__CLASSIFIER=str(model_dir),
        VISIONNET_MODELS__EMBEDDER=str(model_dir),
        VISIONNET_MODELS__BATCH_SIZE="8",
        VISIONNET_ALLOWED_ROOTS=f'["{root}"]',
        VISIONNET_JOBS__CHUNK_SIZE="16",
        VISIONNET_WEB__PORT=str(free_port()),
        VISIONNET_FLOWER__PORT=str(free_port()),
        # The real server's ports are this one and those after it (milvus_server.ports).
        VISIONNET_MILVUS__EMBEDDED_PORT=str(free_port(len(PORT_OFFSETS))),
        PYTHONUNBUFFERED="1",
        # The same stack on a host with GPUs: one CPU model worker, named "models".
        CUDA_VISIBLE_DEVICES="",
        # A pass waits up to 100 ms for company, so that requests sent together
        # share passes however the machine schedules them (test_classify).
        VISIONNET_MODELS__MAX_BATCH_WAIT_MS="100",
        # Small archive limits, so that tests/test_archives.py can reach them.
        VISIONNET_WEB__MAX_ARCHIVE_BYTES=str(2 * 1024 * 1024),
        VISIONNET_JOBS__ARCHIVE_MAX_UNPACKED_BYTES=str(8 * 1024 * 1024),
        VISIONNET_JOBS__ARCHIVE_MAX_ENTRIES="500",
        # Small searches and frequent checkpoints, so that tests/test_duplicates.py can
        # kill a duplicates job between two checkpoints of a few hundred images.
        VISIONNET_DUPLICATES__SEARCH_BATCH="2",
        VISIONNET_DUPLICATES__CHECKPOINT_EVERY="4",
        # URL lists (tests/test_url_lists.py): its image server on loopback allowed by the
        # download guard, and short limits so that each misbehaviour is reached quickly.
        VISIONNET_SOURCES__ALLOWED_NETWORKS='["127.0.0.1/32"]',
        VISIONNET_SOURCES__READ_TIMEOUT_S="2",
        VISIONNET_SOURCES__RETRIES="1",
        VISIONNET_SOURCES__BACKOFF_S="0.05",
        VISIONNET_SOURCES__MAX_BYTES="200000",
        VISIONNET_JOBS__MAX_LIST_URLS="500",
    )
    env.update(extra)
    return env


def start_up(env: dict[str, str], log: Path, *args: str) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [VISIONNET, "up", *args],
        env=env,
        stdout=log.open("ab"),  # O_APPEND: supervisord and its children share it
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )


def stop(proc: subprocess.Popen[bytes]) -> int:
    """Ctrl-C, as a user would; the runner must stop every child."""
    if proc.poll() is None:
        proc.send_signal(signal.SIGINT)
        try:
            return proc.wait(timeout=180)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
    return proc.returncode


_STOPPING: list[subprocess.Popen[bytes]] = []


def stop_later(proc: subprocess.Popen[bytes]) -> None:
    """Ctrl-C now; the orderly stop (about 12 s, one program after another, mostly
    waiting) overlaps the tests that follow, and pytest_sessionfinish waits for it."""
    if proc.poll() is None:
        proc.send_signal(signal.SIGINT)
    _STOPPING.append(proc)


def pytest_sessionfinish() -> None:
    """Every stack stopped with stop_later is gone before pytest exits, as with stop."""
    while _STOPPING:
        proc = _STOPPING.pop()
        try:
            proc.wait(timeout=180)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()


def run_stack(
    tmp: Path, embedder: Callable[[Path], Path] | None = None, **extra_env: str
) -> Iterator[Stack]:
    """A stack as users start it (``visionnet up``), on a tiny model, for a test session.

    ``embedder`` builds a different embedder (in the directory it is given).
    """
    root, outside = tmp / "root", tmp / "outside"
    root.mkdir()
    outside.mkdir()
    model_dir = build_tiny_model(tmp / "model")
    if embedder is not None:
        extra_env["VISIONNET_MODELS__EMBEDDER"] = str(embedder(tmp / "embedder"))
    env = stack_env(tmp, model_dir, root, **extra_env)
    log = tmp / "up.log"
    proc = start_up(env, log)
    base = f"http://127.0.0.1:{env['VISIONNET_WEB__PORT']}"
    try:
        wait_healthy(base, timeout=240)
    except AssertionError:
        stop(proc)
        print(log.read_text()[-5000:])
        raise
    yield Stack(
        base=base,
        root=root,
        outside=outside,
        data=tmp / "data",
        model_dir=model_dir,
        env=env,
        milvus_uri=f"http://127.0.0.1:{env['VISIONNET_MILVUS__EMBEDDED_PORT']}",
        redis_url=f"redis+socket://{tmp / 'data' / 'redis' / 'redis.sock'}",
        log=log,
    )
    stop_later(proc)  # its own data dir and ports: the next stack need not wait


@pytest.fixture(scope="session")
def lite_stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    """The embedded default: Milvus Lite behind the single store writer."""
    yield from run_stack(tmp_path_factory.mktemp("stack"))


@pytest.fixture(scope="session")
def server_stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    """A real Milvus standalone server (milvus.engine = "server"), model workers writing."""
    yield from run_stack(
        tmp_path_factory.mktemp("server-stack"),
        VISIONNET_MILVUS__ENGINE="server",
        VISIONNET_MILVUS__DIRECT_WRITES="true",
        # Not Milvus' own 512: tests/test_milvus_config.py sees it reach the server.
        VISIONNET_MILVUS__SERVER_SEGMENT_MAX_MB="1024",
    )


@pytest.fixture(scope="session")
def stack(lite_stack: Stack) -> Stack:
    """The stack most tests use; store tests override it to run on both stores."""
    return lite_stack


# --- a real browser for the page tests (test_browser.py, test_text_search.py) ---

ARTIFACTS = Path(__file__).resolve().parent.parent / "test-artifacts"
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--no-first-run",
]


def _chromium() -> str:
    for name in ("chromium", "chromium-browser", "google-chrome"):
        found = shutil.which(name)
        if found:
            return found
    pytest.skip(
        "BROWSER TESTS SKIPPED: no chromium on this machine (scripts/setup.sh installs "
        "it with apt when run as root; install the 'chromium' package)"
    )


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    executable = _chromium()
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw:
        launched = pw.chromium.launch(executable_path=executable, args=CHROMIUM_ARGS)
        yield launched
        launched.close()
