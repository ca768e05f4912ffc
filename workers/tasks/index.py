"""Index job: plan (walk and chunk) -> per chunk embed (model queue) -> write (store queue).

Stages are chained, never awaited: the planner only enqueues, each chunk's
writer reports its counts to the job record, and the report that completes
the last chunk finishes the job. Writes are idempotent (content-hash ids,
upserts, a chunk counted once), so these tasks ack late and may be redelivered.
"""

from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import Any, TypedDict

import numpy as np
from celery import shared_task
from pymilvus import MilvusException

from visionnet.jobs import ChunkReport, JobState
from visionnet.queues import EMBED_CHUNK, PLAN_INDEX, WRITE_CHUNK
from workers.context import VisionTask
from workers.models.loading import ModelUnavailableError
from workers.pipeline.reader import FileError, RawFile, decode, read_path
from workers.pipeline.vectors import pack, unpack
from workers.pipeline.walk import chunked, iter_images
from workers.store.milvus_store import CollectionMismatchError, Row

log = logging.getLogger(__name__)


class ChunkPayload(TypedDict):
    ids: list[str]
    paths: list[str]
    sizes: list[int]
    vectors: str
    dim: int
    model: str
    skipped: int
    errors: list[dict[str, str]]


@shared_task(name=PLAN_INDEX, base=VisionTask, bind=True, acks_late=True)
def plan_index(self: VisionTask, *, job_id: str, root: str, collection: str) -> None:
    ctx = self.ctx
    if not ctx.jobs.transition(job_id, JobState.RUNNING, started_at=f"{time.time():.3f}"):
        return
    settings = ctx.settings
    files = iter_images(Path(root), settings.jobs.extensions, settings.resolved_roots)
    for chunk_no, paths in enumerate(chunked(files, settings.jobs.chunk_size)):
        if chunk_no % 64 == 0 and not ctx.jobs.is_active(job_id):
            return
        # Count the chunk before it can possibly report back.
        ctx.jobs.add_planned(job_id, files=len(paths), chunks=1)
        embed = self.app.signature(
            EMBED_CHUNK,
            kwargs={
                "job_id": job_id,
                "chunk_no": chunk_no,
                "paths": paths,
                "collection": collection,
            },
        )
        write = self.app.signature(
            WRITE_CHUNK,
            kwargs={"job_id": job_id, "chunk_no": chunk_no, "collection": collection},
        )
        (embed | write).apply_async()
    ctx.jobs.finish_planning(job_id)


@shared_task(
    name=EMBED_CHUNK,
    base=VisionTask,
    bind=True,
    acks_late=True,
    # The lookup of stored ids reads Milvus; a restarting server is worth waiting for.
    autoretry_for=(MilvusException,),
    retry_backoff=2,
    retry_backoff_max=30,
    max_retries=5,
)
def embed_chunk(
    self: VisionTask, *, job_id: str, chunk_no: int, paths: list[str], collection: str
) -> ChunkPayload | None:
    ctx = self.ctx
    if not ctx.jobs.is_active(job_id):
        return None
    timings: dict[str, float] = {}
    start = time.perf_counter()
    errors: list[dict[str, str]] = []
    fresh: dict[str, RawFile] = {}
    for path in paths:
        raw = read_path(path, ctx.settings.resolved_roots)
        if isinstance(raw, FileError):
            errors.append(raw.as_dict())
        else:
            fresh.setdefault(raw.content_id, raw)  # a copy of a file in the chunk: once
    timings["read"] = time.perf_counter() - start

    start = time.perf_counter()
    stored = ctx.store.existing_ids(collection, list(fresh))
    todo = [(cid, raw) for cid, raw in fresh.items() if cid not in stored]
    timings["lookup"] = time.perf_counter() - start

    try:
        embedder = ctx.models.embedder()
    except ModelUnavailableError as exc:
        ctx.jobs.transition(job_id, JobState.FAILED, error=str(exc))
        return None
    ids: list[str] = []
    names: list[str] = []
    sizes: list[int] = []
    vectors: list[Any] = []
    timings["decode"] = timings["embed"] = 0.0
    batch_size = ctx.settings.models.batch_size
    for b in range(0, len(todo), batch_size):
        start = time.perf_counter()
        images = []
        for cid, raw in todo[b : b + batch_size]:
            image = decode(raw)
            if isinstance(image, FileError):
                errors.append(image.as_dict())
                continue
            images.append(image)
            ids.append(cid)
            names.append(raw.name)
            sizes.append(len(raw.data))
        timings["decode"] += time.perf_counter() - start
        if images:
            start = time.perf_counter()
            vectors.append(embedder.embed(images))
            timings["embed"] += time.perf_counter() - start
    matrix = np.concatenate(vectors) if vectors else np.zeros((0, 1), dtype=np.float32)
    log.info(
        "job %s chunk %d: %d files, %d embedded, %d already stored, %d errors; %s",
        job_id,
        chunk_no,
        len(paths),
        len(ids),
        len(stored),
        len(errors),
        " ".join(f"{k}={v:.3f}s" for k, v in timings.items()),
    )
    return {
        "ids": ids,
        "paths": names,
        "sizes": sizes,
        "vectors": pack(matrix),
        "dim": int(matrix.shape[1]),
        "model": embedder.ref,
        "skipped": len(paths) - len(errors) - len(ids),
        "errors": errors,
    }


@shared_task(
    name=WRITE_CHUNK,
    base=VisionTask,
    bind=True,
    acks_late=True,
    autoretry_for=(MilvusException, ConnectionError),
    retry_backoff=2,
    retry_backoff_max=60,
    max_retries=8,
)
def write_chunk(
    self: VisionTask,
    payload: ChunkPayload | None,
    *,
    job_id: str,
    chunk_no: int,
    collection: str,
) -> None:
    """The only task that writes vectors; its queue has exactly one consumer."""
    ctx = self.ctx
    if payload is None or not ctx.jobs.is_active(job_id):
        return
    start = time.perf_counter()
    new_ids: set[str] = set()
    if payload["ids"]:
        try:
            ctx.store.ensure_collection(collection, payload["dim"], payload["model"])
        except CollectionMismatchError as exc:
            ctx.jobs.transition(job_id, JobState.FAILED, error=str(exc))
            return
        # The single writer decides what is new, so racing chunks cannot double count.
        new_ids = set(payload["ids"]) - ctx.store.existing_ids(collection, payload["ids"])
        vectors = unpack(payload["vectors"], payload["dim"])
        now = int(time.time())
        rows = [
            Row(
                id=cid,
                vector=vectors[i].tolist(),
                path=payload["paths"][i],
                size=payload["sizes"][i],
                model=payload["model"],
                indexed_at=now,
            )
            for i, cid in enumerate(payload["ids"])
            if cid in new_ids
        ]
        ctx.store.upsert(collection, rows)
    report = ChunkReport(
        chunk_no=chunk_no,
        indexed=len(new_ids),
        skipped=payload["skipped"] + len(payload["ids"]) - len(new_ids),
        failed=len(payload["errors"]),
        errors=payload["errors"],
    )
    ctx.jobs.record_chunk(job_id, report)
    log.info(
        "job %s chunk %d: wrote %d rows in %.3fs",
        job_id,
        chunk_no,
        len(new_ids),
        time.perf_counter() - start,
    )
