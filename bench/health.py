"""Latency of the probes monitoring systems send: ``GET /api/v1/health`` and ``GET /metrics``.

Starts a private stack (``visionnet up --no-flower``, demo profile), waits until
it is quiet, then times each endpoint with one client (sequential requests) and
with 4 concurrent clients, 3 runs each; prints p50 and p99 (min and median of
the 3 runs) and writes JSON.

    .venv/bin/python -m bench.health --out bench/results/health.json
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import requests
from rich.console import Console
from rich.table import Table

from bench.report import percentile, spread, write_report
from bench.stack import private_stack, revision, stack_root, wait_until_quiet

ENDPOINTS = ("/api/v1/health", "/metrics")


def timed_requests(url: str, count: int) -> list[float]:
    """Seconds of each of ``count`` sequential GETs on one session; a non-200 is an error."""
    session = requests.Session()
    times = []
    for _ in range(count):
        start = time.perf_counter()
        r = session.get(url, timeout=30)
        times.append(time.perf_counter() - start)
        if r.status_code != 200:
            raise RuntimeError(f"{url} answered {r.status_code}: {r.text[:300]}")
    return times


def run_clients(url: str, total: int, clients: int) -> list[float]:
    """``total`` requests spread over ``clients`` threads started together."""
    results: list[list[float]] = [[] for _ in range(clients)]
    errors: list[BaseException] = []

    def client(i: int) -> None:
        try:
            results[i] = timed_requests(url, total // clients)
        except BaseException as exc:  # reported after the join
            errors.append(exc)

    threads = [threading.Thread(target=client, args=(i,)) for i in range(clients)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    if errors:
        raise errors[0]
    return [t for times in results for t in times]


def measure(base: str, requests_per_run: int, repeats: int) -> list[dict[str, Any]]:
    rows = []
    for endpoint in ENDPOINTS:
        url = base + endpoint
        timed_requests(url, 5)  # warm-up: connections, imports, first scrape
        for clients in (1, 4):
            runs = []
            for _ in range(repeats):
                times = run_clients(url, requests_per_run, clients)
                runs.append(
                    {
                        "requests": len(times),
                        "p50_ms": percentile(times, 0.50) * 1000,
                        "p99_ms": percentile(times, 0.99) * 1000,
                        "max_ms": max(times) * 1000,
                    }
                )
            rows.append(
                {
                    "endpoint": endpoint,
                    "clients": clients,
                    "p50_ms": spread([r["p50_ms"] for r in runs]),
                    "p99_ms": spread([r["p99_ms"] for r in runs]),
                    "runs": runs,
                }
            )
    return rows


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--requests", type=int, default=500, help="Requests per timed run.")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--out", type=Path, default=Path("bench/results/health.json"))
    args = parser.parse_args(argv)
    console = Console()
    with tempfile.TemporaryDirectory(prefix="visionnet-health-") as tmp_name:
        tmp = Path(tmp_name)
        with private_stack(tmp / "stack", [tmp]) as base:
            waited = wait_until_quiet(stack_root(tmp / "stack"))
            console.print(f"stack quiet after {waited:.0f} s")
            rows = measure(base, args.requests, args.repeats)
    table = Table(title=f"probe latency, {args.requests} requests per run, {args.repeats} runs")
    table.add_column("endpoint", no_wrap=True)
    for col in ("clients", "p50 ms min", "p50 ms median", "p99 ms min", "p99 ms median"):
        table.add_column(col)
    for r in rows:
        table.add_row(
            r["endpoint"],
            str(r["clients"]),
            f"{r['p50_ms']['min']:.1f}",
            f"{r['p50_ms']['median']:.1f}",
            f"{r['p99_ms']['min']:.1f}",
            f"{r['p99_ms']['median']:.1f}",
        )
    console.print(table)
    report = {
        "revision": revision(),
        "requests": args.requests,
        "repeats": args.repeats,
        "results": rows,
    }
    write_report(args.out, report, console)
    return 0


if __name__ == "__main__":
    sys.exit(main())
