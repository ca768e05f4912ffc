"""The production HTTP server for the web app: gunicorn, pre-forked worker processes.

One Python process is held to about one core by the GIL (waitress measured
about 700 req/s), so gunicorn runs several processes on one socket. The
default worker class is ``sync``, one request at a time per process: in
``bench/web_load.py`` it kept p99 near 10 ms where threaded (``gthread``)
workers showed 15-40 ms tails from GIL hand-offs. Its cost: a slow client
holds a process for the length of its upload, so when clients are remote
and slow put a buffering proxy (nginx) in front, or choose ``gthread``.
Request bodies are streamed to Flask, which answers an oversized upload
with its own JSON 413 instead of a server's plain-text page.
"""

from __future__ import annotations

import os
from typing import Any

from gunicorn.app.base import BaseApplication

from visionnet.config.settings import Settings


def worker_count(settings: Settings) -> int:
    """``web.workers``, or two per core when it is 0 (auto)."""
    return settings.web.workers or 2 * (os.cpu_count() or 1)


def gunicorn_options(settings: Settings) -> dict[str, Any]:
    return {
        "bind": f"{settings.web.host}:{settings.web.port}",
        "workers": worker_count(settings),
        "worker_class": settings.web.worker_class,
        "threads": settings.web.threads,  # gthread only
        "keepalive": 5,  # gthread only; sync workers close after each response
        # A worker busy longer than this is replaced. Requests never wait on
        # tasks; only an upload from a slow client takes long.
        "timeout": 120,
        "graceful_timeout": 10,
        # No access log by default: it costs a third of a small request's CPU.
        "accesslog": None,
        "errorlog": "-",
        "loglevel": "warning",
        # The app is made in each worker after the fork, so nothing (a Redis
        # connection pool) is shared between processes.
        "preload_app": False,
        "proc_name": "visionnet-web",
    }


class WebServer(BaseApplication):  # type: ignore[misc]
    """gunicorn configured from VisionNet settings instead of its command line."""

    def __init__(self, settings: Settings) -> None:
        self._options = gunicorn_options(settings)
        super().__init__()

    def load_config(self) -> None:
        for key, value in self._options.items():
            self.cfg.set(key, value)

    def load(self) -> Any:
        from visionnet.web import create_app

        return create_app()


def serve(settings: Settings) -> None:
    WebServer(settings).run()
