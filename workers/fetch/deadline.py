"""One deadline per attempt, enforced on the socket, however slowly the server sends.

A socket timeout restarts at every byte received: a server that sends its
status line, its headers or its body one byte a second never trips it. So each
attempt registers a ``Watch``; the connections it uses join it when they start
reading a response, and one thread per fetcher shuts their sockets down when
the deadline passes. A blocked read then returns at once and the attempt fails
with its timeout.
"""

from __future__ import annotations

import contextlib
import heapq
import itertools
import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager

from urllib3.connection import HTTPConnection, HTTPSConnection
from urllib3.response import HTTPResponse

_local = threading.local()


class Watch:
    """The connections of one attempt and whether its deadline has passed."""

    def __init__(self, deadline: float) -> None:
        self.deadline = deadline
        self.expired = False
        self.finished = False
        self._conns: set[HTTPConnection] = set()
        self._lock = threading.Lock()

    def add(self, conn: HTTPConnection) -> None:
        with self._lock:
            if self.expired:
                _shut(conn)
            else:
                self._conns.add(conn)

    def discard(self, conn: HTTPConnection | None) -> None:
        """Before a connection goes back to its pool: another attempt may take it next."""
        with self._lock:
            self._conns.discard(conn)

    def expire(self) -> None:
        with self._lock:
            if self.finished:
                return
            self.expired = True
            for conn in self._conns:
                _shut(conn)
            self._conns.clear()

    def finish(self) -> None:
        with self._lock:
            self.finished = True
            self._conns.clear()


def _shut(conn: HTTPConnection) -> None:
    sock = conn.sock
    if sock is None:
        return
    # socket.socket's own shutdown, also for a TLS socket: SSLSocket.shutdown would
    # drop its SSL object under the reading thread's feet. OSError: already closed.
    with contextlib.suppress(OSError):
        socket.socket.shutdown(sock, socket.SHUT_RDWR)


class Deadlines:
    """The thread that expires watches; started at the first watch."""

    def __init__(self) -> None:
        self._heap: list[tuple[float, int, Watch]] = []
        self._order = itertools.count()
        self._cond = threading.Condition()
        self._thread: threading.Thread | None = None
        self._stopped = False

    @contextmanager
    def watch(self, deadline: float) -> Iterator[Watch]:
        """The attempt's watch, which this thread's requests join while it is open."""
        entry = Watch(deadline)
        with self._cond:
            if self._thread is None and not self._stopped:
                self._thread = threading.Thread(target=self._run, name="fetch-deadlines")
                self._thread.daemon = True
                self._thread.start()
            heapq.heappush(self._heap, (deadline, next(self._order), entry))
            self._cond.notify()
        outer = getattr(_local, "watch", None)
        _local.watch = entry
        try:
            yield entry
        finally:
            _local.watch = outer
            entry.finish()

    def _run(self) -> None:
        while True:
            with self._cond:
                while True:
                    if self._stopped:
                        return
                    while self._heap and self._heap[0][2].finished:
                        heapq.heappop(self._heap)
                    if not self._heap:
                        self._cond.wait()
                        continue
                    wait = self._heap[0][0] - time.monotonic()
                    if wait <= 0:
                        due = heapq.heappop(self._heap)[2]
                        break
                    self._cond.wait(wait)
            due.expire()

    def stop(self) -> None:
        with self._cond:
            self._stopped = True
            self._cond.notify()


def _join(conn: HTTPConnection) -> None:
    """Join the thread's open watch as the response starts to be read."""
    watch: Watch | None = getattr(_local, "watch", None)
    if watch is not None:
        watch.add(conn)


class WatchedHTTPConnection(HTTPConnection):
    def getresponse(self) -> HTTPResponse:  # type: ignore[override]  # as urllib3 does
        _join(self)
        return super().getresponse()


class WatchedHTTPSConnection(HTTPSConnection):
    def getresponse(self) -> HTTPResponse:  # type: ignore[override]  # as urllib3 does
        _join(self)
        return super().getresponse()
