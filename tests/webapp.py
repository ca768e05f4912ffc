"""The web app alone, from its factory, on a private Redis: no worker, no Milvus.

For the tests of what the web process answers by itself (contract, validation,
auth): Flask's test client in this process, a real ``redis-server`` on a unix
socket in a temp dir. Anything that runs a job needs the whole stack instead
(tests/conftest.py). The fixtures are made visible to every module by conftest.
"""

from __future__ import annotations

import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import redis
from flask.testing import FlaskClient

from visionnet.config.settings import Settings
from visionnet.stack import redis_server_binary
from visionnet.web import create_app


def start_redis(folder: Path) -> tuple[subprocess.Popen[bytes], str]:
    """A throwaway redis-server on a unix socket in ``folder``; nothing persisted."""
    folder.mkdir(parents=True, exist_ok=True)
    sock = folder / "redis.sock"
    proc = subprocess.Popen(
        [redis_server_binary(), "--port", "0", "--unixsocket", str(sock),
         "--unixsocketperm", "700", "--dir", str(folder), "--save", "",
         "--appendonly", "no", "--loglevel", "warning"],
        stdout=(folder / "redis.log").open("ab"),
        stderr=subprocess.STDOUT,
    )  # fmt: skip
    deadline = time.monotonic() + 30
    while True:
        try:
            if redis.Redis(unix_socket_path=str(sock), socket_timeout=1).ping():
                return proc, f"redis+socket://{sock}"
        except (redis.ConnectionError, FileNotFoundError):
            pass
        if proc.poll() is not None or time.monotonic() > deadline:
            proc.kill()
            raise AssertionError(
                f"redis-server did not start: {(folder / 'redis.log').read_text()}"
            )
        time.sleep(0.05)


@dataclass
class WebApp:
    """A test client of the real app and the folders its settings name."""

    redis_url: str
    root: Path  # the one allowed root
    outside: Path  # a folder outside it
    data: Path
    client: FlaskClient = field(init=False)

    def __post_init__(self) -> None:
        self.client = self.client_with()

    def settings(self, **overrides: Any) -> Settings:
        """Settings for another app on the same Redis and folders (e.g. with a token)."""
        given: dict[str, Any] = {
            "redis_url": self.redis_url,
            "data_dir": self.data,
            "allowed_roots": [self.root],
            **overrides,
        }
        return Settings(**given)

    def client_with(self, **overrides: Any) -> FlaskClient:
        """A test client of an app built with these settings changed."""
        return create_app({"SETTINGS": self.settings(**overrides), "TESTING": True}).test_client()


@pytest.fixture(scope="session")
def private_redis(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """The URL of a redis-server of this test session's own."""
    proc, url = start_redis(tmp_path_factory.mktemp("redis"))
    yield url
    proc.terminate()
    proc.wait(timeout=30)


@pytest.fixture(scope="session")
def web(private_redis: str, tmp_path_factory: pytest.TempPathFactory) -> WebApp:
    """The app as ``visionnet web`` builds it (default settings but Redis, data and roots)."""
    tmp = tmp_path_factory.mktemp("web")
    root, outside = tmp / "root", tmp / "outside"
    root.mkdir()
    outside.mkdir()
    return WebApp(private_redis, root, outside, tmp / "data")
