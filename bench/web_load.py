"""Load on the job status endpoint: ``GET /api/v1/jobs/<id>``, the request pollers make most.

Starts a private stack (``visionnet up --no-flower``) per web server setting,
records one finished job, and drives it with ``wrk`` (a C load generator, so
the client takes little of the 2 cores): 16 connections, 3 timed runs per
setting after a warm-up, min and median reported. Every setting is measured
in the same run, so the ratios between them hold on a noisy machine.

    apt-get install wrk        # once
    .venv/bin/python -m bench.web_load --out bench/results/web_load.json
"""

from __future__ import annotations

import argparse
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import requests
from rich.console import Console
from rich.table import Table

from bench.report import spread, write_report
from bench.stack import private_stack

# (label, web.workers, web.worker_class, web.threads). 1 x gthread 8 is one
# process, as the waitress server before it ran.
SETTINGS: list[tuple[str, int, str, int]] = [
    ("1 process, gthread x 8 threads", 1, "gthread", 8),
    ("3 processes, gthread x 4 threads", 3, "gthread", 4),
    ("2 processes, sync", 2, "sync", 1),
    ("4 processes, sync (default on 2 cores)", 0, "sync", 1),
    ("6 processes, sync", 6, "sync", 1),
]
UNITS = {"us": 0.001, "ms": 1.0, "s": 1000.0}


def parse_wrk(out: str) -> dict[str, float]:
    """Requests/s and latency percentiles (ms) from ``wrk --latency`` output."""
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))  # type: ignore[union-attr]
    lat: dict[str, float] = {}
    for pct, value, unit in re.findall(r"^\s+(50|75|90|99)%\s+([\d.]+)(us|ms|s)\s*$", out, re.M):
        lat[f"p{pct}_ms"] = float(value) * UNITS[unit]
    errors = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    socket_errors = re.search(r"Socket errors: (.*)", out)
    return {
        "rps": rps,
        **lat,
        "non_2xx": float(errors.group(1)) if errors else 0.0,
        "socket_errors": 1.0 if socket_errors else 0.0,
    }


def finished_job(base: str) -> str:
    png = _png()
    r = requests.post(
        f"{base}/api/v1/classify", files=[("files", ("a.png", png, "image/png"))], timeout=30
    )
    job_id = str(r.json()["job_id"])
    for _ in range(600):
        if requests.get(f"{base}/api/v1/jobs/{job_id}", timeout=10).json()["state"] == "succeeded":
            return job_id
        time.sleep(0.1)
    raise RuntimeError("the classify job did not finish")


def _png() -> bytes:
    import io

    from PIL import Image

    buf = io.BytesIO()
    Image.new("RGB", (32, 32), (200, 30, 30)).save(buf, format="PNG")
    return buf.getvalue()


def measure(url: str, connections: int, seconds: int, repeats: int) -> list[dict[str, float]]:
    wrk = ["wrk", "-t2", f"-c{connections}", "--latency"]
    subprocess.run([*wrk, "-d3s", url], capture_output=True, check=True)  # warm-up
    runs = []
    for _ in range(repeats):
        out = subprocess.run([*wrk, f"-d{seconds}s", url], capture_output=True, text=True)
        runs.append(parse_wrk(out.stdout))
    return runs


def summarize(runs: list[dict[str, float]]) -> dict[str, Any]:
    return {key: spread([r[key] for r in runs]) for key in ("rps", "p50_ms", "p99_ms")} | {
        "non_2xx": sum(r["non_2xx"] for r in runs),
        "runs": runs,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--connections", type=int, default=16)
    parser.add_argument("--seconds", type=int, default=10)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--out", type=Path, default=Path("bench/results/web_load.json"))
    args = parser.parse_args(argv)
    if shutil.which("wrk") is None:
        sys.exit("wrk is not installed: apt-get install wrk")
    console = Console()
    results = []
    with tempfile.TemporaryDirectory(prefix="visionnet-load-") as tmp_name:
        tmp = Path(tmp_name)
        for n, (label, workers, worker_class, threads) in enumerate(SETTINGS):
            workdir = tmp / f"stack-{n}"
            env = {
                "VISIONNET_WEB__WORKERS": str(workers),
                "VISIONNET_WEB__WORKER_CLASS": worker_class,
                "VISIONNET_WEB__THREADS": str(threads),
            }
            with private_stack(workdir, [tmp], extra_env=env) as base:
                url = f"{base}/api/v1/jobs/{finished_job(base)}"
                runs = measure(url, args.connections, args.seconds, args.repeats)
            results.append({"setting": label, "workers": workers, "worker_class": worker_class,
                            "threads": threads, **summarize(runs)})  # fmt: skip
            console.print(f"{label}: {results[-1]['rps']['median']:.0f} req/s median")
    table = Table(title=f"GET /api/v1/jobs/<id>, {args.connections} connections, wrk")
    for col in ("web server setting", "req/s min", "req/s median", "p50 ms median",
                "p99 ms min", "p99 ms median", "non-2xx"):  # fmt: skip
        table.add_column(col)
    for r in results:
        table.add_row(
            r["setting"],
            f"{r['rps']['min']:.0f}",
            f"{r['rps']['median']:.0f}",
            f"{r['p50_ms']['median']:.2f}",
            f"{r['p99_ms']['min']:.2f}",
            f"{r['p99_ms']['median']:.2f}",
            f"{r['non_2xx']:.0f}",
        )
    console.print(table)
    report = {
        "connections": args.connections,
        "seconds": args.seconds,
        "repeats": args.repeats,
        "results": results,
    }
    write_report(args.out, report, console)
    return 0


if __name__ == "__main__":
    sys.exit(main())
