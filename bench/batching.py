"""P3: dynamic batching of concurrent one-image requests, against no batching.

For each setting, a private stack (``visionnet up --no-flower``, demo model):
a lone client's one-image classify latency (sequential requests), then
``--clients`` clients each sending one-image classify jobs back to back until
``--requests`` are done: images/s and per-request latency. Both settings run
in the same invocation, one after the other, ``--repeats`` times each.

    .venv/bin/python -m bench.batching --photos ../shared/datasets/imagenet-sample-100
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

from bench.client import Api, job_seconds
from bench.images import images_under
from bench.report import percentile, write_report
from bench.stack import private_stack


def timed(api: Api, path: Path) -> tuple[float, float]:
    """(as the client saw it, by the job record): the client's polling backs off from
    50 ms, so its figure includes up to one poll interval after the job ended."""
    start = time.perf_counter()
    job = api.wait(api.submit("classify", json={"paths": [str(path)]}))
    return time.perf_counter() - start, job_seconds(job)


def measure(api: Api, files: list[Path], clients: int, requests: int) -> dict[str, float]:
    lone = [timed(api, files[i % len(files)]) for i in range(20)]
    start = time.perf_counter()
    with ThreadPoolExecutor(clients) as pool:
        latencies = list(pool.map(lambda i: timed(api, files[i % len(files)]), range(requests)))
    wall = time.perf_counter() - start
    client = [c for c, _ in latencies]
    record = [r for _, r in latencies]
    return {
        "lone_p50_s": statistics.median(c for c, _ in lone),
        "img_per_s": requests / wall,
        "p50_s": statistics.median(client),
        "p95_s": percentile(client, 0.95),
        "record_lone_p50_s": statistics.median(r for _, r in lone),
        "record_p50_s": statistics.median(record),
        "record_p95_s": percentile(record, 0.95),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--photos", type=Path, required=True)
    parser.add_argument("--clients", type=int, default=32)
    parser.add_argument("--requests", type=int, default=640)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--out", type=Path, default=Path("bench/results/batching.json"))
    args = parser.parse_args(argv)
    console = Console()
    files = images_under(args.photos.resolve())
    results: dict[str, list[dict[str, float]]] = {"batching": [], "none": []}
    with tempfile.TemporaryDirectory(prefix="visionnet-p3-") as tmp_name:
        tmp = Path(tmp_name)
        for label, enabled in (("batching", "true"), ("none", "false")):
            env = {"VISIONNET_MODELS__DYNAMIC_BATCHING": enabled}
            with private_stack(tmp / label, [args.photos], extra_env=env) as base:
                api = Api(base)
                timed(api, files[0])  # the model is loaded
                for rep in range(args.repeats):
                    results[label].append(measure(api, files, args.clients, args.requests))
                    r = results[label][-1]
                    console.print(f"{label} run {rep + 1}: {r['img_per_s']:.1f} img/s, p95 "
                                  f"{r['p95_s']:.3f} s, lone {r['lone_p50_s']:.3f} s")  # fmt: skip

    def med(label: str, key: str) -> float:
        return statistics.median(r[key] for r in results[label])

    table = Table(title=f"P3: {args.clients} concurrent one-image classify clients (median of "
                  f"{args.repeats})")  # fmt: skip
    cols = ("setting", "img/s", "p50 s", "p95 s", "lone p50 s", "p95 / lone",
            "rec p50 s", "rec p95 s", "rec lone p50 s", "rec p95 / lone")  # fmt: skip
    for col in cols:
        table.add_column(col)
    for label in results:
        table.add_row(label, f"{med(label, 'img_per_s'):.1f}", f"{med(label, 'p50_s'):.3f}",
                      f"{med(label, 'p95_s'):.3f}", f"{med(label, 'lone_p50_s'):.3f}",
                      f"{med(label, 'p95_s') / med(label, 'lone_p50_s'):.1f}",
                      f"{med(label, 'record_p50_s'):.3f}", f"{med(label, 'record_p95_s'):.3f}",
                      f"{med(label, 'record_lone_p50_s'):.3f}",
                      f"{med(label, 'record_p95_s') / med(label, 'record_lone_p50_s'):.1f}",
                      )  # fmt: skip
    ratio = med("batching", "img_per_s") / med("none", "img_per_s")
    console.print(table)
    console.print(f"throughput, batching / none: {ratio:.2f}")
    report: dict[str, Any] = {
        "clients": args.clients,
        "requests": args.requests,
        "results": results,
        "throughput_ratio": ratio,
    }
    write_report(args.out, report, console)
    return 0


if __name__ == "__main__":
    sys.exit(main())
