"""A local HTTP server of images and misbehaviours, for download tests.

It counts what reached it: connections accepted, requests per path, and the
most requests in flight at once per ``Host`` header, so a test can check that
a refused URL never connected and that a per-host limit held.

Paths (``KEY`` is any word, so tests sharing one server do not share counts):
- ``/img/NAME.png|jpg|webp``: a picture in that format; ``?type=text/plain``
  sends that Content-Type instead of the right one.
- ``/html``: an HTML page sent as image/jpeg.
- ``/status/CODE/KEY``: that status every time.
- ``/fail/CODE/N/KEY``: the status CODE for the first N requests, then a picture;
  ``?after=S`` adds ``Retry-After: S`` to the failures.
- ``/slow/KEY``: a picture after 0.3 s.
- ``/trickle/body``: a 1,000-byte body announced, one byte each 0.1 s;
  ``/trickle/head``: the status line and headers one byte each 0.1 s. Both
  stop after 60 bytes; ``trickled[path]`` is how many were sent before the
  client hung up (60: it never did).
- ``/big/announced`` and ``/big/unannounced``: ``big`` bytes, with and without
  Content-Length (the second ends by closing the connection).
- ``/redirect?to=URL`` (302), ``/relative`` (302 to ``img/a.png``), ``/loop/KEY``
  (A to B to A).
"""

from __future__ import annotations

import socket
import ssl
import threading
import time
from collections import Counter
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

from tests.helpers import image_bytes

FORMATS = {
    "png": ("PNG", "image/png"),
    "jpg": ("JPEG", "image/jpeg"),
    "webp": ("WEBP", "image/webp"),
}


class ImageServer(ThreadingHTTPServer):
    """Serves on ``host`` (an IPv4 or IPv6 address) at a free port; ``tls`` wraps it."""

    daemon_threads = True
    big = 300_000

    def __init__(self, host: str = "127.0.0.1", tls: ssl.SSLContext | None = None) -> None:
        self.address_family = socket.AF_INET6 if ":" in host else socket.AF_INET
        super().__init__((host, 0), _Handler)
        if tls is not None:
            self.socket = tls.wrap_socket(self.socket, server_side=True)
        self.lock = threading.Lock()
        self.connections = 0
        self.requests: Counter[str] = Counter()
        self.times: dict[str, list[float]] = {}
        self.in_flight: Counter[str] = Counter()
        self.max_in_flight: Counter[str] = Counter()
        self.hosts: list[str] = []
        self.trickled: dict[str, int] = {}
        self.pictures = {
            ext: image_bytes(seed, fmt) for seed, (ext, (fmt, _)) in enumerate(FORMATS.items())
        }
        self._thread = threading.Thread(target=self.serve_forever, daemon=True)
        self._thread.start()

    @property
    def port(self) -> int:
        return int(self.server_address[1])

    def url(self, path: str, host: str | None = None) -> str:
        name = host or str(self.server_address[0])
        name = f"[{name}]" if ":" in name else name
        scheme = "https" if isinstance(self.socket, ssl.SSLSocket) else "http"
        return f"{scheme}://{name}:{self.port}{path}"

    def get_request(self) -> tuple[Any, Any]:
        pair = super().get_request()
        with self.lock:
            self.connections += 1
        return pair

    def handle_error(self, request: Any, client_address: Any) -> None:
        pass  # clients that hang up on a trickle or a cap are the point of the tests

    def stop(self) -> None:
        self.shutdown()
        self.server_close()


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: ImageServer

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def do_GET(self) -> None:
        parts = urlsplit(self.path)
        query = {k: v[-1] for k, v in parse_qs(parts.query).items()}
        path = parts.path
        srv = self.server
        host = self.headers.get("Host", "")
        with srv.lock:
            srv.requests[path] += 1
            srv.times.setdefault(path, []).append(time.monotonic())
            srv.hosts.append(host)
            count = srv.requests[path]
        step = path.strip("/").split("/")
        if step[0] == "img":
            ext = step[-1].rsplit(".", 1)[-1]
            self._send(200, srv.pictures[ext], query.get("type", FORMATS[ext][1]))
        elif step[0] == "html":
            self._send(200, b"<!doctype html><title>x</title><p>not a picture</p>", "image/jpeg")
        elif step[0] == "status":
            self._send(int(step[1]), b"no", "text/plain")
        elif step[0] == "fail":
            code, times = int(step[1]), int(step[2])
            if count <= times:
                extra = {"Retry-After": query["after"]} if "after" in query else {}
                self._send(code, b"later", "text/plain", extra)
            else:
                self._send(200, srv.pictures["png"], "image/png")
        elif step[0] == "slow":
            with srv.lock:
                srv.in_flight[host] += 1
                srv.max_in_flight[host] = max(srv.max_in_flight[host], srv.in_flight[host])
            time.sleep(0.3)
            with srv.lock:
                srv.in_flight[host] -= 1
            self._send(200, srv.pictures["png"], "image/png")
        elif step[0] == "trickle":
            head = b"HTTP/1.1 200 OK\r\nContent-Type: image/png\r\nX-Slow: "
            if path == "/trickle/body":
                self._head(200, "image/png", {"Content-Length": "1000"})
                head = b"\x89"
            self.wfile.flush()
            sent = 0
            try:
                for _ in range(60):
                    self.wfile.write(head[sent : sent + 1] or b"x")
                    self.wfile.flush()
                    sent += 1
                    time.sleep(0.1)
            finally:
                srv.trickled[path] = sent  # under 60: the client hung up first
        elif path == "/big/announced":
            self._send(200, b"\xff" * srv.big, "image/jpeg")
        elif path == "/big/unannounced":
            self.close_connection = True
            self._head(200, "image/jpeg", {"Connection": "close"})
            self.wfile.write(srv.pictures["jpg"] + b"\0" * srv.big)
        elif step[0] == "redirect":
            self._send(302, b"", "text/plain", {"Location": query["to"]})
        elif step[0] == "relative":
            self._send(302, b"", "text/plain", {"Location": "img/a.png"})
        elif step[0] == "loop":
            other = "b" if step[-1] == "a" else "a"
            self._send(301, b"", "text/plain", {"Location": f"/loop/{step[1]}/{other}"})
        else:
            self._send(404, b"not here", "text/plain")

    def _head(self, code: int, ctype: str, extra: dict[str, str]) -> None:
        self.send_response(code)
        self.send_header("Content-Type", ctype)
        for name, value in extra.items():
            self.send_header(name, value)
        self.end_headers()

    def _send(
        self, code: int, body: bytes, ctype: str, extra: dict[str, str] | None = None
    ) -> None:
        self._head(code, ctype, {"Content-Length": str(len(body)), **(extra or {})})
        self.wfile.write(body)
