"""Import an export file (Parquet: a collection's ids, metadata and vectors) into any store.

Why: a collection that outgrows Milvus Lite moves to a Milvus server without
embedding every image again. ``visionnet import FILE --collection C`` reads
the export job's file (``visionnet.workers.model_worker.export``) batch by
batch (memory bounded by one row group, whatever the file's size), creates the
collection with the file's model and dimension (or refuses an existing one of
another model or dimension, as an index job does), upserts by id (a re-run
writes the same rows again) and records every row in the catalog the web reads
(``visionnet.core.catalog``), as an index job's commit does.

Milvus Lite takes exactly one writer, the store worker. The import does not
write beside it: it takes the store writer lock for its whole run, and refuses
while a store worker holds it (the user stops the store worker, imports, and
starts it again). A real server takes concurrent writers: no lock.

Plain upserts rather than Milvus' bulk import: bulk import inserts (a re-run
would store every row twice), needs a rewritten file (the ``model`` column,
64-bit sizes), and on a server with object storage the file must be uploaded
there first; see ``bench/import_speed.py`` for the figures.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
from pymilvus import MilvusException
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

from visionnet.config.settings import Settings
from visionnet.core.catalog import Catalog
from visionnet.core.collections import CollectionRegistry
from visionnet.core.redis_conn import connect
from visionnet.workers.store_writer.writer_lock import (
    WriterLock,
    WriterLockTakenError,
    hold_writer_lock,
)
from visionnet.workers.vectorstore.milvus_store import (
    CollectionMismatchError,
    Row,
    VectorStore,
    describe_error,
)
from visionnet.workers.vectorstore.write_clock import WriteClock

# The export's columns and their types; the ones an older collection lacks may be absent.
REQUIRED: dict[str, pa.DataType] = {
    "id": pa.string(),
    "path": pa.string(),
    "size": pa.int64(),
    "indexed_at": pa.int64(),
}
OPTIONAL: dict[str, pa.DataType] = {
    "width": pa.int32(),
    "height": pa.int32(),
    "label": pa.string(),
    "label_score": pa.float32(),
}
BATCH_ROWS = 4096  # the export's row group
# Milvus Lite keeps unflushed rows in memory only: flush (0.6 s) every so many rows,
# and record rows in the catalog only once flushed.
LITE_FLUSH_ROWS = 65536


class ImportRefusedError(RuntimeError):
    """The file is not an export, the store cannot take it, or the store stopped answering."""


@dataclass(frozen=True)
class ExportFile:
    path: Path
    collection: str  # the collection it was exported from
    model: str
    dim: int
    rows: int
    columns: tuple[str, ...]
    # The runtime/precision labels of its vectors (none in exports made before them).
    vectors: tuple[str, ...] = ()


@dataclass(frozen=True)
class ImportSummary:
    collection: str
    model: str
    dim: int
    rows: int  # read from the file and upserted
    new: int  # rows the collection's catalog did not hold before
    total: int  # rows in the collection's catalog after
    created: bool
    seconds: float

    def describe(self) -> str:
        made = "created" if self.created else "existing"
        rate = self.rows / self.seconds if self.seconds else 0.0
        return (
            f"imported {self.rows} rows into {made} collection {self.collection!r} "
            f"({self.dim}-d, model {self.model!r}) in {self.seconds:.1f} s ({rate:.0f} rows/s): "
            f"{self.new} new, {self.rows - self.new} already there; it holds {self.total} images"
        )


def open_export(path: Path) -> ExportFile:
    """Read and check an export file's schema (not its rows)."""
    try:
        meta = pq.read_schema(path)
        rows = pq.ParquetFile(path).metadata.num_rows
    except (OSError, pa.ArrowInvalid) as exc:
        raise ImportRefusedError(f"{path}: not a readable Parquet file ({exc})") from exc
    info = {k.decode(): v.decode() for k, v in (meta.metadata or {}).items()}
    if "model" not in info:
        raise ImportRefusedError(
            f"{path}: no 'model' in the file's metadata: not a VisionNet export "
            "(GET /api/v1/jobs/<id>/export, or `visionnet export`)"
        )
    vector = meta.field("vector").type if "vector" in meta.names else None
    if not (
        isinstance(vector, pa.FixedSizeListType) and vector.value_type == pa.float32()
    ):  # the export's vectors: fixed-size lists of float32
        raise ImportRefusedError(f"{path}: no 'vector' column of fixed-size float32 lists")
    for name, kind in {**REQUIRED, **OPTIONAL}.items():
        if name in REQUIRED and name not in meta.names:
            raise ImportRefusedError(f"{path}: no {name!r} column")
        if name in meta.names and meta.field(name).type != kind:
            raise ImportRefusedError(
                f"{path}: column {name!r} is {meta.field(name).type}, expected {kind}"
            )
    columns = tuple(n for n in [*REQUIRED, *OPTIONAL] if n in meta.names)
    made = tuple(v for v in info.get("vectors", "").split(",") if v)
    return ExportFile(
        path, info.get("collection", ""), info["model"], vector.list_size, rows, columns, made
    )


def batches(export: ExportFile, batch_rows: int = BATCH_ROWS) -> Iterator[list[Row]]:
    """The file's rows, ``batch_rows`` at a time, as the store's rows."""
    reader = pq.ParquetFile(export.path)
    for batch in reader.iter_batches(batch_size=batch_rows, columns=[*export.columns, "vector"]):
        vectors = batch.column("vector").flatten().to_numpy().reshape(-1, export.dim)
        meta = batch.select(list(export.columns)).to_pylist()
        yield [Row(vector=vectors[i].tolist(), model=export.model, **m) for i, m in enumerate(meta)]


def import_rows(
    export: ExportFile,
    collection: str,
    store: VectorStore,
    redis_client: Any,
    *,
    flush_every: int,
    progress: Callable[[int], None] = lambda rows: None,
) -> ImportSummary:
    """Upsert every row of ``export`` into ``collection`` and its catalog.

    ``flush_every``: rows between store flushes (0: flush only at the end, for a
    server, which logs every acknowledged write itself). Catalog entries are
    written once their rows are flushed (or acknowledged, on a server), so the
    web never lists an image the store could lose.
    """
    start = time.perf_counter()
    catalog, registry = Catalog(redis_client), CollectionRegistry(redis_client)
    created = not store.has_collection(collection)
    try:
        # Vectors of one runtime/precision are checked like an index job's; a file of
        # mixed or unrecorded ones is not (the collection records none of them).
        made = export.vectors[0] if len(export.vectors) == 1 else ""
        store.ensure_collection(collection, export.dim, export.model, made)
    except CollectionMismatchError as exc:
        raise ImportRefusedError(
            f"{exc} (the file {export.path} holds {export.dim}-d vectors of {export.model!r})"
        ) from exc
    registry.created(collection, export.model, export.dim, vectors=store.made_by(collection))
    before = catalog.count(collection)
    done = unflushed = 0
    pending: dict[str, dict[str, Any]] = {}
    for rows in batches(export):
        store.upsert(collection, rows, flush=False)
        pending.update((r.id, r.as_dict()) for r in rows)
        unflushed += len(rows)
        if not flush_every or unflushed >= flush_every:
            if flush_every:
                store.flush(collection)
            catalog.put(collection, pending)
            pending, unflushed = {}, 0
        done += len(rows)
        progress(done)
    store.flush(collection)
    catalog.put(collection, pending)
    total = catalog.count(collection)
    return ImportSummary(
        collection,
        export.model,
        export.dim,
        done,
        total - before,
        total,
        created,
        round(time.perf_counter() - start, 3),
    )


def _lite_writer_lock(settings: Settings, redis_client: Any) -> WriterLock:
    """The store writer lock, for the import's run; refused while a store worker holds it."""
    try:
        return hold_writer_lock(redis_client, 0.0, settings.milvus.writer_lock_ttl_s)
    except WriterLockTakenError as exc:
        conf = settings.data_path / "run" / "supervisord.conf"
        raise ImportRefusedError(
            "Milvus Lite takes exactly one writer and the store worker is running. "
            f"Stop it (`supervisorctl -c {conf} stop store` under `visionnet up`), run "
            "the import, then start it again. A store worker that died holds the lock "
            f"for up to {settings.milvus.writer_lock_ttl_s:.0f} s."
        ) from exc


def run_import(
    settings: Settings,
    path: Path,
    collection: str,
    *,
    uri: str = "",
    token: str = "",
    progress: Callable[[ExportFile], Callable[[int], None]] = lambda export: lambda rows: None,
) -> ImportSummary:
    """``visionnet import``: the store from settings, or ``uri``; the catalog in settings' Redis."""
    export = open_export(path)
    lite = settings.milvus_is_lite and uri in ("", settings.effective_milvus_uri)
    redis_client = connect(settings.effective_redis_url)
    lock = _lite_writer_lock(settings, redis_client) if lite else None
    m = settings.milvus
    target = uri or settings.effective_milvus_uri
    try:
        store = VectorStore(
            target,
            token or m.token,
            m.timeout_s,
            clock=WriteClock(redis_client),  # Session reads wait for these writes
        )
        return import_rows(
            export,
            collection,
            store,
            redis_client,
            flush_every=LITE_FLUSH_ROWS if lite else 0,
            progress=progress(export),
        )
    except MilvusException as exc:
        raise ImportRefusedError(
            f"Milvus at {target}: {describe_error(exc)}. Is it running (`visionnet up` for the "
            "embedded one)? Rows written before this stay; running the import again completes it."
        ) from exc
    finally:
        if lock is not None:
            lock.release()


def import_with_progress(
    settings: Settings, path: Path, collection: str, *, uri: str = "", token: str = ""
) -> ImportSummary:
    """``run_import`` with a progress bar on stderr (stdout keeps the summary)."""
    columns = (
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeRemainingColumn(),
    )
    with Progress(*columns, console=Console(stderr=True)) as bar:

        def progress(export: ExportFile) -> Callable[[int], None]:
            task = bar.add_task(f"{export.path.name} -> {collection}", total=export.rows)
            return lambda done: bar.update(task, completed=done)

        return run_import(settings, path, collection, uri=uri, token=token, progress=progress)
