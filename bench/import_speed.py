"""``visionnet import`` into the real Milvus server: plain upserts against Milvus' bulk import.

``python -m bench.import_speed`` (writes ``bench/results/import_speed.json``). It
writes an export-format Parquet file (``--rows`` x ``--dim`` random unit vectors
and their metadata, as the export job writes it), starts the real Milvus 2.3.5
standalone server with the project's launcher (``visionnet milvus-server``,
loopback only) and a private Redis in a temp dir, then times, ``--repeats``
times each, interleaved, into a new collection each time:

- upsert: the importer's own path (``import_rows``: batches from the file,
  upserts by id, the catalog in Redis, one flush at the end);
- bulk: Milvus' bulk insert of a local file (``utility.do_bulk_insert``), the
  server's ``localStorage`` standing in for object storage, including the file
  rewrite it needs (a ``model`` column, 64-bit widths and heights) and waiting
  until the server reports the import completed, then releasing and loading
  the collection (before that, its rows are invisible: count 0). Its rows are
  not in the catalog; that write is left out of its time.

Each collection is counted afterwards, so a method that loses rows shows.
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
from rich.console import Console
from rich.table import Table

from bench.million import start_server, wait_ready
from bench.report import spread, write_report
from bench.stack import free_port, stop_group
from visionnet.core.redis_conn import connect
from visionnet.milvus_server import PORT_OFFSETS
from visionnet.stack import redis_server_binary
from visionnet.workers.store_writer.importer import import_rows, open_export
from visionnet.workers.vectorstore.milvus_store import VectorStore

MODEL = "bench-model"


def write_export(path: Path, rows: int, dim: int, seed: int = 0) -> None:
    """An export job's file: its columns, types and row groups, with random rows."""
    rng = np.random.default_rng(seed)
    schema = pa.schema(
        [
            pa.field("id", pa.string(), nullable=False),
            pa.field("path", pa.string(), nullable=False),
            pa.field("size", pa.int64(), nullable=False),
            pa.field("width", pa.int32(), nullable=False),
            pa.field("height", pa.int32(), nullable=False),
            pa.field("indexed_at", pa.int64(), nullable=False),
            pa.field("label", pa.string(), nullable=False),
            pa.field("label_score", pa.float32(), nullable=False),
            pa.field("vector", pa.list_(pa.float32(), dim), nullable=False),
        ],
        metadata={"collection": "bench", "model": MODEL},
    )
    with pq.ParquetWriter(path, schema, compression="zstd") as writer:
        for start in range(0, rows, 4096):
            n = min(4096, rows - start)
            vectors = rng.standard_normal((n, dim)).astype(np.float32)
            vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
            ids = [f"{i:064x}" for i in range(start, start + n)]
            columns = {
                "id": ids,
                "path": [f"/photos/{i // 1000}/{i}.jpg" for i in range(start, start + n)],
                "size": np.full(n, 123_456, np.int64),
                "width": np.full(n, 640, np.int32),
                "height": np.full(n, 480, np.int32),
                "indexed_at": np.full(n, 1_700_000_000, np.int64),
                "label": ["cat"] * n,
                "label_score": np.full(n, 0.5, np.float32),
                "vector": pa.FixedSizeListArray.from_arrays(pa.array(vectors.ravel()), dim),
            }
            writer.write_table(pa.table(columns, schema=schema))


def bulk_file(src: Path, dst: Path) -> None:
    """What bulk insert needs from an export file: every schema field, its exact type."""
    with pq.ParquetWriter(dst, _bulk_schema(pq.read_schema(src))) as writer:
        for batch in pq.ParquetFile(src).iter_batches(batch_size=4096):
            table = pa.Table.from_batches([batch])
            n = table.num_rows
            table = table.append_column("model", pa.array([MODEL] * n))
            for name in ("width", "height"):
                at = table.schema.get_field_index(name)
                table = table.set_column(at, name, table.column(name).cast(pa.int64()))
            vec = table.column("vector").combine_chunks()
            at = table.schema.get_field_index("vector")
            table = table.set_column(
                at, "vector", pa.ListArray.from_arrays(_offsets(n, vec.type.list_size), vec.values)
            )
            writer.write_table(table.cast(writer.schema))


def _offsets(n: int, size: int) -> pa.Array:
    return pa.array(np.arange(0, (n + 1) * size, size, dtype=np.int32))


def _bulk_schema(src: pa.Schema) -> pa.Schema:
    fields = []
    for f in src:
        if f.name in ("width", "height"):
            fields.append(pa.field(f.name, pa.int64()))
        elif f.name == "vector":
            fields.append(pa.field("vector", pa.list_(pa.float32())))
        else:
            fields.append(pa.field(f.name, f.type))
    return pa.schema([*fields, pa.field("model", pa.string())])


def time_upsert(export: Path, uri: str, redis_url: str, name: str) -> float:
    store = VectorStore(uri)
    start = time.perf_counter()
    import_rows(open_export(export), name, store, connect(redis_url), flush_every=0)
    return time.perf_counter() - start


def time_bulk(export: Path, work: Path, uri: str, name: str, dim: int) -> float:
    from pymilvus import BulkInsertState, MilvusClient, connections, utility

    VectorStore(uri).ensure_collection(name, dim, MODEL)
    connections.connect(alias="bench", uri=uri)
    start = time.perf_counter()
    converted = work / f"{name}.parquet"
    bulk_file(export, converted)
    task = utility.do_bulk_insert(name, [str(converted)], using="bench")
    while True:
        state = utility.get_bulk_insert_state(task, using="bench")
        if state.state == BulkInsertState.ImportCompleted:
            break
        if state.state in (BulkInsertState.ImportFailed, BulkInsertState.ImportFailedAndCleaned):
            raise RuntimeError(f"bulk insert failed: {state.failed_reason}")
        time.sleep(0.2)
    # Rows bulk-inserted into a loaded collection stay invisible to searches and
    # queries (count 0) until it is released and loaded again (seen on 2.3.5).
    client = MilvusClient(uri=uri)
    client.release_collection(name)
    client.load_collection(name)
    return time.perf_counter() - start


def count(uri: str, name: str) -> int:
    from pymilvus import MilvusClient

    client = MilvusClient(uri=uri)
    client.load_collection(name)
    rows = client.query(name, filter="", output_fields=["count(*)"])
    return int(rows[0]["count(*)"])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=100_000)
    parser.add_argument("--dim", type=int, default=256)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--methods", default="upsert,bulk")
    parser.add_argument("--out", type=Path, default=Path("bench/results/import_speed.json"))
    args = parser.parse_args(argv)
    console = Console()
    methods = args.methods.split(",")
    with tempfile.TemporaryDirectory(prefix="import-speed-") as tmp:
        work = Path(tmp)
        export = work / "export.parquet"
        write_export(export, args.rows, args.dim)
        sock = work / "redis.sock"
        redis = subprocess.Popen(
            [redis_server_binary(), "--port", "0", "--unixsocket", str(sock), "--save", ""],
            stdout=subprocess.DEVNULL,
            start_new_session=True,
        )
        port = free_port(len(PORT_OFFSETS))
        server = start_server(work / "milvus", port, 512)
        uri = f"http://127.0.0.1:{port}"
        times: dict[str, list[float]] = {m: [] for m in methods}
        errors: dict[str, str] = {}
        counts: dict[str, list[int]] = {m: [] for m in methods}
        try:
            wait_ready(uri)
            console.print(
                f"server ready; {args.rows} x {args.dim}-d, file {export.stat().st_size} B"
            )
            for rep in range(args.repeats):
                for method in methods:
                    if method in errors:
                        continue
                    name = f"{method}_{rep}"
                    try:
                        if method == "upsert":
                            seconds = time_upsert(export, uri, f"unix://{sock}", name)
                        else:
                            seconds = time_bulk(export, work, uri, name, args.dim)
                    except Exception as exc:  # report it: e.g. bulk insert unavailable
                        errors[method] = f"{type(exc).__name__}: {exc}"
                        console.print(f"{method}: {errors[method]}")
                        continue
                    times[method].append(seconds)
                    counts[method].append(count(uri, name))
                    console.print(f"{name}: {seconds:.2f} s, {counts[method][-1]} rows")
        finally:
            stop_group(server, 15, 120)
            redis.terminate()
            redis.wait()
    table = Table(title=f"import {args.rows} x {args.dim}-d rows into Milvus 2.3.5 (server)")
    for col in ("method", "min s", "median s", "rows/s (median)", "rows stored", "error"):
        table.add_column(col)
    results: dict[str, Any] = {}
    for method in methods:
        got = times[method]
        entry: dict[str, Any] = {"seconds": spread(got) if got else None, "counts": counts[method]}
        if got:
            entry["rows_per_s_median"] = round(args.rows / statistics.median(got))
        if method in errors:
            entry["error"] = errors[method]
        results[method] = entry
        table.add_row(
            method,
            f"{min(got):.2f}" if got else "-",
            f"{statistics.median(got):.2f}" if got else "-",
            str(entry.get("rows_per_s_median", "-")),
            ",".join(map(str, counts[method])) or "-",
            errors.get(method, ""),
        )
    console.print(table)
    report = {"rows": args.rows, "dim": args.dim, "repeats": args.repeats, "methods": results}
    write_report(args.out, report, console)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
