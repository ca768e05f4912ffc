"""Interactive latency beside bulk work: a search by image id, idle and during an index job.

One private stack (``visionnet up --no-flower``, demo model). A gallery folder
is indexed first; then ``--queries`` searches (by image id, k 10), one after
another, are timed from submission to success: once with the stack idle, once
while an index job over ``--bulk`` (a large folder, into another collection)
runs. Reports p50 and p95 of each and their ratio.

    .venv/bin/python -m bench.interactive --gallery ../shared/datasets/imagenet-sample-100 \\
        --bulk ../shared/datasets/cifar10-test
"""

from __future__ import annotations

import argparse
import hashlib
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

from bench.client import Api
from bench.images import images_under
from bench.report import percentile, write_report
from bench.stack import private_stack


def search_latencies(api: Api, ids: list[str], collection: str) -> list[float]:
    out = []
    for image_id in ids:
        start = time.perf_counter()
        api.wait(api.submit("search", json={"image_id": image_id, "k": 10,
                                            "collection": collection}))  # fmt: skip
        out.append(time.perf_counter() - start)
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--gallery", type=Path, required=True)
    parser.add_argument("--bulk", type=Path, required=True)
    parser.add_argument("--queries", type=int, default=30)
    parser.add_argument("--out", type=Path, default=Path("bench/results/interactive.json"))
    args = parser.parse_args(argv)
    console = Console()
    gallery = images_under(args.gallery)
    ids = [hashlib.sha256(p.read_bytes()).hexdigest() for p in gallery[: args.queries]]
    with tempfile.TemporaryDirectory(prefix="visionnet-inter-") as tmp_name:
        tmp = Path(tmp_name)
        roots = [args.gallery.resolve(), args.bulk.resolve()]
        with private_stack(tmp / "stack", roots) as base:
            api = Api(base)
            api.wait(api.submit("index", json={"source": {"path": str(args.gallery.resolve())},
                                               "collection": "gallery"}))  # fmt: skip
            search_latencies(api, ids[:3], "gallery")  # warm
            idle = search_latencies(api, ids, "gallery")
            bulk_id = api.submit("index", json={"source": {"path": str(args.bulk.resolve())},
                                                "collection": "bulk"})  # fmt: skip
            time.sleep(3)  # the planner has queued the chunks; the worker is mid-chunk
            busy = search_latencies(api, ids, "gallery")
            state = api.session.get(f"{base}/api/v1/jobs/{bulk_id}", timeout=30).json()
            still_running = state["state"] == "running"
            bulk = api.wait(bulk_id)
    rows: dict[str, Any] = {
        "idle": {"p50_s": statistics.median(idle), "p95_s": percentile(idle, 0.95), "runs": idle},
        "during_index_job": {
            "p50_s": statistics.median(busy),
            "p95_s": percentile(busy, 0.95),
            "runs": busy,
        },
        "index_job_still_running_after_the_searches": still_running,
        "index_job_files": bulk["result"]["total"],
    }
    rows["p50_ratio"] = rows["during_index_job"]["p50_s"] / rows["idle"]["p50_s"]
    rows["p95_ratio"] = rows["during_index_job"]["p95_s"] / rows["idle"]["p95_s"]
    table = Table(title=f"search by id, k 10, {args.queries} sequential queries (seconds)")
    for col in ("", "p50", "p95"):
        table.add_column(col)
    table.add_row("idle", f"{rows['idle']['p50_s']:.3f}", f"{rows['idle']['p95_s']:.3f}")
    table.add_row("during an index job", f"{rows['during_index_job']['p50_s']:.3f}",
                  f"{rows['during_index_job']['p95_s']:.3f}")  # fmt: skip
    table.add_row("ratio", f"{rows['p50_ratio']:.2f}", f"{rows['p95_ratio']:.2f}")
    console.print(table)
    console.print(f"index job still running when the searches ended: {still_running}")
    write_report(args.out, rows, console)
    return 0


if __name__ == "__main__":
    sys.exit(main())
