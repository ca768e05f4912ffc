"""What a search costs on Milvus Lite while rows are not flushed yet (``milvus.lite_flush_rows``).

The store writer leaves up to ``milvus.lite_flush_rows`` rows of a collection
unflushed (store_writer/flush_due.py); Milvus Lite searches them by a scan of
its memory table, not through an index. This bench embeds CIFAR-10 pictures
with the demo model, and for each row count starts a milvus-lite server,
upserts that many rows unflushed through ``VectorStore`` (the writer's own
client code) and times top-10 searches; then flushes (segment and HNSW index)
and times them again. ``--repeats`` searches each, the first left out (a cold
load); median and max.

    .venv/bin/python -m bench.unflushed_search --cifar ../shared/datasets/cifar10-test
"""

from __future__ import annotations

import argparse
import contextlib
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
from rich.console import Console
from rich.table import Table

from bench.images import images_under
from bench.report import write_report
from bench.stack import free_port
from visionnet.training.folder import decode_rgb
from visionnet.workers.models.embedder import Embedder
from visionnet.workers.vectorstore.milvus_store import Row, VectorStore


@contextlib.contextmanager
def lite_server(data: Path) -> Iterator[VectorStore]:
    port = free_port()
    exe = Path(sys.executable).with_name("milvus-lite")
    argv = [str(exe), "server", "--data-dir", str(data), "--host", "127.0.0.1"]
    proc = subprocess.Popen(
        [*argv, "--port", str(port)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                store = VectorStore(f"http://127.0.0.1:{port}")
                store.names()
                break
            except Exception:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.2)
        yield store
    finally:
        proc.kill()
        proc.wait()


def timed_searches(store: VectorStore, queries: np.ndarray, repeats: int) -> dict[str, float]:
    seconds = []
    for q in range(repeats + 1):
        start = time.perf_counter()
        store.search("c", queries[q % len(queries)].tolist(), 10)
        seconds.append(time.perf_counter() - start)
    kept = seconds[1:]
    return {"median_ms": statistics.median(kept) * 1000, "max_ms": max(kept) * 1000}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--cifar", type=Path, required=True, help="CIFAR-10 test, <class>/ dirs.")
    parser.add_argument("--rows", default="1000,2500,4096,10000")
    parser.add_argument("--repeats", type=int, default=20)
    parser.add_argument("--out", type=Path, default=Path("bench/results/unflushed_search.json"))
    args = parser.parse_args(argv)
    console = Console()
    counts = [int(n) for n in args.rows.split(",")]
    paths = images_under(args.cifar)[: max(counts)]
    embedder = Embedder("builtin:demo-cifar10", "cpu")
    vectors = np.concatenate(
        [
            np.asarray(embedder.embed(decode_rgb(paths[i : i + 256])), dtype=np.float32)
            for i in range(0, len(paths), 256)
        ]
    )
    results: dict[str, Any] = {}
    for n in counts:
        with (
            tempfile.TemporaryDirectory(prefix="visionnet-unflushed-") as tmp,
            lite_server(Path(tmp)) as store,
        ):
            store.ensure_collection("c", vectors.shape[1], "builtin:demo-cifar10", "torch/fp32")
            rows = [
                Row(f"{i:064x}", vectors[i].tolist(), f"/d/{i}.png", 1, "demo", 0) for i in range(n)
            ]
            store.upsert("c", rows, flush=False)
            unflushed = timed_searches(store, vectors[::97], args.repeats)
            store.flush("c")
            time.sleep(3)  # the segment's index is built in the background
            flushed = timed_searches(store, vectors[::97], args.repeats)
        results[str(n)] = {"unflushed": unflushed, "flushed": flushed}
        console.print(f"{n} rows: unflushed {unflushed}, flushed {flushed}")
    table = Table(title=f"Top-10 search on Milvus Lite, {vectors.shape[1]}-d demo vectors (ms)")
    for col in ("rows", "unflushed: median / max", "flushed: median / max"):
        table.add_column(col, justify="right")
    for rows_text, res in results.items():
        u, f = res["unflushed"], res["flushed"]
        table.add_row(
            rows_text,
            f"{u['median_ms']:.1f} / {u['max_ms']:.1f}",
            f"{f['median_ms']:.1f} / {f['max_ms']:.1f}",
        )
    console.print(table)
    write_report(args.out, {"dim": int(vectors.shape[1]), "rows": results}, console)
    return 0


if __name__ == "__main__":
    sys.exit(main())
