"""Export job: a collection's ids, metadata and vectors, streamed into one Parquet file.

Why Parquet: one self-describing file, vectors as fixed-size float32 lists beside
the metadata columns, compressed, read directly by pandas, polars, DuckDB or
pyarrow; written here a row group per page of the store's iterator, so neither
this worker nor the reader has to hold the collection. The web serves the file
(``GET /api/v1/jobs/<id>/export``); it lives under the data directory for as
long as job records do.
"""

from __future__ import annotations

import logging
import os
import time
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
from celery import shared_task

from visionnet.core.datafiles import export_path, sweep
from visionnet.core.jobs import JobState
from visionnet.core.jobtypes import ExportParams, job_type
from visionnet.workers.model_worker.context import ModelTask
from visionnet.workers.vectorstore.milvus_store import CollectionNotFoundError

log = logging.getLogger(__name__)

PAGE = 4096
# Column types; a collection made before a metadata field existed lacks that column.
COLUMNS: dict[str, pa.DataType] = {
    "id": pa.string(),
    "path": pa.string(),
    "size": pa.int64(),
    "width": pa.int32(),
    "height": pa.int32(),
    "indexed_at": pa.int64(),
    "label": pa.string(),
    "label_score": pa.float32(),
}


@shared_task(name=job_type("export").task, base=ModelTask, bind=True, acks_late=True)
def export_collection(self: ModelTask, *, job_id: str, params: dict[str, Any]) -> None:
    ctx = self.ctx
    collection = ExportParams.model_validate(params).collection
    if not ctx.jobs.start(job_id):
        return
    target = export_path(ctx.settings, job_id)
    target.parent.mkdir(parents=True, exist_ok=True)
    sweep(target.parent, ctx.settings.result_ttl_s)
    partial = target.with_suffix(".parquet.partial")
    try:
        info = ctx.store.info(collection)
    except CollectionNotFoundError as exc:
        ctx.jobs.transition(job_id, JobState.FAILED, error=str(exc))
        return
    names = [n for n in COLUMNS if n in info.fields]
    dim = info.dim
    schema = pa.schema(
        [pa.field(n, COLUMNS[n], nullable=False) for n in names]
        + [pa.field("vector", pa.list_(pa.float32(), dim), nullable=False)],
        metadata={"collection": collection, "model": info.model, "vectors": ",".join(info.vectors)},
    )
    ctx.jobs.set_fields(job_id, total=ctx.catalog.count(collection))
    rows = 0
    start = time.perf_counter()
    # Redelivered after a crash: the partial file is rewritten from the start.
    with pq.ParquetWriter(partial, schema, compression="zstd") as writer:
        page: list[dict[str, Any]] = []
        for row in ctx.store.iterate(collection, "", [*names, "vector"], batch=PAGE):
            page.append(row)
            if len(page) == PAGE:
                writer.write_table(pa.Table.from_pylist(page, schema))
                rows += len(page)
                page = []
                if not ctx.jobs.set_fields(job_id, done=rows) or not ctx.jobs.is_active(job_id):
                    break  # cancelled or expired: stop reading
        else:
            if page:
                writer.write_table(pa.Table.from_pylist(page, schema))
                rows += len(page)
    if not ctx.jobs.is_active(job_id):
        partial.unlink(missing_ok=True)
        return
    os.replace(partial, target)
    seconds = time.perf_counter() - start
    log.info("job %s: exported %d rows of %s in %.1f s", job_id, rows, collection, seconds)
    ctx.jobs.set_fields(job_id, total=rows, done=rows)
    result = {
        "collection": collection,
        "rows": rows,
        "dim": dim,
        "columns": [*names, "vector"],
        "bytes": target.stat().st_size,
        "format": "parquet",
        "download_url": f"/api/v1/jobs/{job_id}/export",
        "seconds": round(seconds, 3),
    }
    ctx.jobs.transition(job_id, JobState.SUCCEEDED, result=result)
