"""The store path at a lower CPU priority (``stack.store_nice``): index jobs and searches.

    python -m bench.store_nice --folder ../shared/datasets/cifar10-test \\
        --gallery ../shared/datasets/imagenet-sample-100

(writes ``bench/results/store_nice.json``). Two private stacks run at once on
the embedded default (Milvus Lite), one per ``--nice`` value (``0,10``: the
Milvus Lite server and the store writer under ``nice -n``). Each indexes the
gallery first. Then, in turn, each runs an index job over ``--folder`` into a
fresh collection while one client searches the gallery by image id, one search
after another, until the job ends; ``--repeats`` rounds, each after both
stacks went quiet. Reported per setting: the job's images/s (server clock) and
the searches' latency, from the job records (submit to succeeded, server
clock) and as the client saw it (HTTP and polling included).

On 2 cores the index job's forward passes share the CPU with Milvus Lite's
segment and index building and the writer; niced, those run in the gaps. The
searches run in Milvus Lite too, so they may pay for it: both are measured.
"""

from __future__ import annotations

import argparse
import hashlib
import statistics
import sys
import tempfile
import threading
import time
from contextlib import ExitStack
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

from bench.client import Api, job_seconds
from bench.images import images_under
from bench.report import percentile, spread, write_report
from bench.stack import private_stack, stack_root, wait_until_quiet


def searches_during(
    api: Api, ids: list[str], running: threading.Event
) -> list[tuple[float, float]]:
    """(client seconds, job-record seconds) of searches run back to back while ``running``."""
    out = []
    i = 0
    while running.is_set():
        start = time.perf_counter()
        job = api.wait(api.submit("search", json={"image_id": ids[i % len(ids)], "k": 10,
                                                  "collection": "gallery"}))  # fmt: skip
        out.append((time.perf_counter() - start, job_seconds(job)))
        i += 1
    return out


def one_round(api: Api, folder: Path, collection: str, ids: list[str]) -> dict[str, Any]:
    running = threading.Event()
    running.set()
    found: list[tuple[float, float]] = []
    searcher = threading.Thread(target=lambda: found.extend(searches_during(api, ids, running)))
    job_id = api.submit("index", json={"source": {"path": str(folder)}, "collection": collection})
    time.sleep(2)  # the planner has queued the chunks; the worker is mid-chunk
    searcher.start()
    job = api.wait(job_id)
    running.clear()
    searcher.join()
    client = [c for c, _ in found]
    record = [r for _, r in found]
    return {
        "img_per_s": job["result"]["total"] / job_seconds(job),
        "searches": len(found),
        "search_record_p50_ms": statistics.median(record) * 1e3,
        "search_record_p95_ms": percentile(record, 0.95) * 1e3,
        "search_client_p50_ms": statistics.median(client) * 1e3,
        "search_client_p95_ms": percentile(client, 0.95) * 1e3,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--folder", type=Path, required=True, help="Images the jobs index.")
    parser.add_argument("--gallery", type=Path, required=True, help="Images the searches hit.")
    parser.add_argument("--nice", default="0,10", help="stack.store_nice values, comma separated.")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--out", type=Path, default=Path("bench/results/store_nice.json"))
    args = parser.parse_args(argv)
    console = Console()
    folder, gallery = args.folder.resolve(), args.gallery.resolve()
    ids = [hashlib.sha256(p.read_bytes()).hexdigest() for p in images_under(gallery)]
    settings = [int(v) for v in args.nice.split(",")]
    rounds: dict[int, list[dict[str, Any]]] = {n: [] for n in settings}
    with tempfile.TemporaryDirectory(prefix="visionnet-nice-") as tmp_name, ExitStack() as stack:
        tmp = Path(tmp_name)
        bases = {
            n: stack.enter_context(
                private_stack(
                    tmp / f"nice{n}",
                    [folder, gallery],
                    extra_env={"VISIONNET_STACK__STORE_NICE": str(n)},
                )
            )
            for n in settings
        }
        roots = {n: stack_root(tmp / f"nice{n}") for n in settings}
        for n in settings:
            api = Api(bases[n])
            api.wait(api.submit("index", json={"source": {"path": str(gallery)},
                                               "collection": "gallery"}))  # fmt: skip
        for rep in range(args.repeats):
            for n in settings:
                for root in roots.values():
                    wait_until_quiet(root)
                r = one_round(Api(bases[n]), folder, f"bulk{rep}", ids)
                rounds[n].append(r)
                console.print(
                    f"nice {n} round {rep + 1}: {r['img_per_s']:.1f} img/s; {r['searches']} "
                    f"searches, p50 {r['search_record_p50_ms']:.0f} ms, p95 "
                    f"{r['search_record_p95_ms']:.0f} ms (job records)"
                )

    def med(n: int, key: str) -> float:
        return float(statistics.median(r[key] for r in rounds[n]))

    table = Table(title=f"store_nice, {len(images_under(folder)):,} files per job, "
                  f"{args.repeats} rounds (medians)")  # fmt: skip
    for col in ("store_nice", "index img/s", "search p50 ms", "search p95 ms",
                "client p50 ms", "client p95 ms"):  # fmt: skip
        table.add_column(col, justify="right")
    keys = ("img_per_s", "search_record_p50_ms", "search_record_p95_ms",
            "search_client_p50_ms", "search_client_p95_ms")  # fmt: skip
    for n in settings:
        table.add_row(str(n), *(f"{med(n, k):.1f}" if k == "img_per_s" else f"{med(n, k):.0f}"
                                for k in keys))  # fmt: skip
    console.print(table)
    first, last = settings[0], settings[-1]
    ratio = med(last, "img_per_s") / med(first, "img_per_s")
    console.print(f"index job, nice {last} / nice {first}: {ratio:.3f}x")
    report = {
        "command": "python -m bench.store_nice " + " ".join(sys.argv[1:] if argv is None else argv),
        "rounds": {str(n): rounds[n] for n in settings},
        "img_per_s": {str(n): spread([r["img_per_s"] for r in rounds[n]]) for n in settings},
        "ratio_img_per_s": ratio,
    }
    write_report(args.out, report, console)
    return 0


if __name__ == "__main__":
    sys.exit(main())
