"""Download rate of ``Fetcher.fetch_many`` (workers/fetch) from a local HTTP server.

``python -m bench.fetch_speed`` (writes ``bench/results/fetch_speed.json``). It
writes ``--images`` distinct JPEGs (``--side`` pixels square) to a temp folder,
serves them with http.server (HTTP/1.1 keep-alive) in its own process on
127.0.0.1 (so the server does not share the client's interpreter), and times fetch_many over
all of them, ``--repeats`` times per setting, each with a fresh Fetcher (no
kept connections from the run before): the guard, the pinned connection, the
byte counting and the decode check (Pillow's ``verify``) included; no model,
no store. Settings: ``download_threads`` and ``per_host`` as the table shows,
every URL on one host (the server's address, allow-listed).

The figure is an upper bound for the URL-list source's download stage on this
machine: no network latency, no TLS, a server that answers at once.
"""

from __future__ import annotations

import argparse
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image
from rich.console import Console
from rich.table import Table

from bench.report import spread, write_report
from bench.stack import free_port, stop_group
from visionnet.config.settings import SourceSettings
from visionnet.workers.fetch import Fetched, Fetcher

SETTINGS = [(1, 1), (4, 4), (16, 4), (16, 16)]  # (download_threads, per_host)
# The folder's files over HTTP/1.1 keep-alive, with a listen backlog that takes 16
# connections at once (http.server's default of 5 drops SYNs: 1 s retransmits) and
# TCP_NODELAY (else Nagle and delayed ACKs hold each response ~40 ms).
SERVER = """
import sys
from functools import partial
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
class Quiet(SimpleHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True  # headers and body go out in two writes
    def log_message(self, *args): pass
ThreadingHTTPServer.request_queue_size = 128
ThreadingHTTPServer(("127.0.0.1", int(sys.argv[1])), partial(Quiet, directory=".")).serve_forever()
"""


def write_images(folder: Path, count: int, side: int) -> int:
    rng = np.random.default_rng(0)
    total = 0
    for i in range(count):
        pixels = rng.integers(0, 255, (side // 8, side // 8, 3), dtype=np.uint8)
        picture = Image.fromarray(pixels).resize((side, side), Image.Resampling.BILINEAR)
        path = folder / f"{i:05d}.jpg"
        picture.save(path, quality=85)
        total += path.stat().st_size
    return total


def wait_up(port: int) -> None:
    end = time.monotonic() + 30
    while time.monotonic() < end:
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.1)
    raise RuntimeError("the HTTP server did not start")


@contextmanager
def image_server(folder: Path) -> Iterator[int]:
    """``folder``'s files served over HTTP/1.1 on 127.0.0.1 from a process of their own
    (so the server does not share the client's interpreter); yields its port."""
    port = free_port()
    server = subprocess.Popen(
        [sys.executable, "-c", SERVER, str(port)],
        cwd=folder,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    try:
        wait_up(port)
        yield port
    finally:
        stop_group(server, signal.SIGTERM, 10)


def one_run(urls: list[str], threads: int, per_host: int) -> float:
    settings = SourceSettings(
        allowed_networks=["127.0.0.1/32"], download_threads=threads, per_host=per_host
    )
    with Fetcher(settings) as fetcher:
        start = time.perf_counter()
        got = sum(isinstance(o, Fetched) for _, o in fetcher.fetch_many(urls))
        took = time.perf_counter() - start
    if got != len(urls):
        raise RuntimeError(f"{len(urls) - got} of {len(urls)} downloads failed")
    return took


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=1000)
    parser.add_argument("--side", type=int, default=256)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--out", type=Path, default=Path("bench/results/fetch_speed.json"))
    args = parser.parse_args()
    console = Console()
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        size = write_images(folder, args.images, args.side)
        with image_server(folder) as port:
            urls = [f"http://127.0.0.1:{port}/{i:05d}.jpg" for i in range(args.images)]
            rows: list[dict[str, Any]] = []
            for threads, per_host in SETTINGS:
                times = [one_run(urls, threads, per_host) for _ in range(args.repeats)]
                rates = [args.images / t for t in times]
                rows.append(
                    {
                        "download_threads": threads,
                        "per_host": per_host,
                        "seconds": spread(times),
                        "urls_per_s": spread(rates),
                        "mb_per_s_median": size / 1e6 / spread(times)["median"],
                    }
                )
    table = Table(title=f"fetch_many, {args.images} JPEGs of {size / args.images / 1e3:.0f} kB")
    for col in ("threads", "per host", "URLs/s min", "URLs/s median", "MB/s median"):
        table.add_column(col, justify="right")
    for r in rows:
        table.add_row(
            str(r["download_threads"]),
            str(r["per_host"]),
            f"{r['urls_per_s']['min']:.0f}",
            f"{r['urls_per_s']['median']:.0f}",
            f"{r['mb_per_s_median']:.1f}",
        )
    console.print(table)
    report = {
        "images": args.images,
        "bytes_per_image": size / args.images,
        "repeats": args.repeats,
        "server": "http.server, HTTP/1.1 keep-alive, TCP_NODELAY, backlog 128, own process",
        "rows": rows,
    }
    write_report(args.out, report, console)


if __name__ == "__main__":
    main()
