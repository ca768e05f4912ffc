"""CPU threads of a forward pass over a few pictures: CPU time and wall time per picture.

``python -m bench.cpu_threads --images ../shared/datasets/cifar10-test`` (writes
``bench/results/cpu_threads.json``). The demo model's classifier, as the
interactive worker calls it (``Classifier.predict``, flip averaging on), over
decoded pictures in passes of 1, 4, 8 and 32, with torch's intra-op threads set
to each of ``--threads`` in turn, interleaved in one process; each timed
``--repeats`` times for ``--seconds`` of passes. CPU time is this process's
(``time.process_time``: every thread of the pass, the spinning ones too).
A way written ``1x2`` runs two passes at a time, each on one thread, from two
Python threads (the bulk worker runs one pass at a time on torch's default).

Why: an interactive pass holds the pictures of the few requests that arrived
together, and on a machine of few cores the CPU a pass spends is what the other
requests and the bulk worker wait for (``models.interactive_cpu_threads``).
"""

from __future__ import annotations

import argparse
import statistics
import sys
import threading
import time
from pathlib import Path
from typing import Any

import torch
from PIL import Image
from rich.console import Console
from rich.table import Table

from bench.images import images_under
from bench.report import spread, write_report
from visionnet.training.folder import decode_rgb


def per_picture_ms(
    model: Any, images: list[Image.Image], batch: int, seconds: float, lanes: int = 1
) -> tuple[float, float]:
    """(CPU ms, wall ms) per picture over passes of ``batch`` for about ``seconds``.

    ``lanes`` threads run passes at the same time (torch releases the GIL inside
    its ops); the wall time per picture is then the inverse of their combined rate.
    """
    done = [0] * lanes
    wall0, cpu0 = time.perf_counter(), time.process_time()

    def lane(n: int) -> None:
        at = n * batch
        while time.perf_counter() - wall0 < seconds:
            model.predict(images[at : at + batch], 5)
            done[n] += batch
            at = (at + batch * lanes) % (len(images) - batch)

    threads = [threading.Thread(target=lane, args=(n,)) for n in range(lanes)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    wall, cpu = time.perf_counter() - wall0, time.process_time() - cpu0
    return cpu * 1000 / sum(done), wall * 1000 / sum(done)


def parse_way(way: str) -> tuple[int, int]:
    """ "2": one pass at a time on 2 threads; "1x2": 2 passes at a time on 1 thread each."""
    threads, _, lanes = way.partition("x")
    return int(threads), int(lanes or 1)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--images", type=Path, required=True, help="A folder of pictures.")
    parser.add_argument(
        "--threads",
        default="1,2",
        help='Ways to compare: "N" (one pass at a time on N threads), "NxM" (M passes at '
        "a time, N threads each).",
    )
    parser.add_argument("--batches", default="1,4,8,32")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--seconds", type=float, default=2.0)
    parser.add_argument("--out", type=Path, default=Path("bench/results/cpu_threads.json"))
    args = parser.parse_args(argv)
    from visionnet.workers.models.classifier import Classifier

    console = Console()
    threads = args.threads.split(",")
    batches = [int(b) for b in args.batches.split(",")]
    model = Classifier("builtin:demo-cifar10", "cpu")
    images = decode_rgb(images_under(args.images)[:512])
    model.predict(images[:32], 5)  # warm
    runs: dict[str, dict[str, list[float]]] = {}
    for _ in range(args.repeats):
        for batch in batches:
            for n in threads:
                per_pass, lanes = parse_way(n)
                torch.set_num_threads(per_pass)
                cpu, wall = per_picture_ms(model, images, batch, args.seconds, lanes)
                run = runs.setdefault(f"{batch}/{n}", {"cpu_ms": [], "wall_ms": []})
                run["cpu_ms"].append(cpu)
                run["wall_ms"].append(wall)
    table = Table(title="Demo classifier, flip averaging on: ms per picture, min / median")
    for col in (
        "pictures per pass",
        "threads",
        "CPU ms",
        "wall ms",
        "CPU vs first",
        "wall vs first",
    ):
        table.add_column(col, justify="right")
    report: dict[str, Any] = {"torch_default_threads": torch.get_num_threads(), "rows": []}
    for batch in batches:
        first = runs[f"{batch}/{threads[0]}"]
        for n in threads:
            run = runs[f"{batch}/{n}"]
            cpu_ratio = statistics.median(run["cpu_ms"]) / statistics.median(first["cpu_ms"])
            wall_ratio = statistics.median(run["wall_ms"]) / statistics.median(first["wall_ms"])
            table.add_row(
                str(batch),
                n,
                f"{min(run['cpu_ms']):.2f} / {statistics.median(run['cpu_ms']):.2f}",
                f"{min(run['wall_ms']):.2f} / {statistics.median(run['wall_ms']):.2f}",
                f"{cpu_ratio:.2f}x",
                f"{wall_ratio:.2f}x",
            )
            report["rows"].append(
                {
                    "batch": batch,
                    "threads": n,
                    "cpu_ms_per_picture": spread(run["cpu_ms"]),
                    "wall_ms_per_picture": spread(run["wall_ms"]),
                }
            )
    console.print(table)
    write_report(args.out, report, console)
    return 0


if __name__ == "__main__":
    sys.exit(main())
